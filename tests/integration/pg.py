"""A real, throw-away PostgreSQL 15 server for integration tests and benchmarks.

    with pg.PG(tmpdir) as db:            # initdb + start on a free port, database "sluice"
        db.sql("CREATE TABLE t (id int PRIMARY KEY, v text)")
        db.copy_in("t", [(1, "a"), (2, None)], ["id", "v"])
        rows = db.sql("SELECT id, v FROM t ORDER BY id")   # [("1", "a"), ("2", None)]
        db.kill(); db.start()            # crash and recover

Standard library only: the server is driven with pg_ctl and queried with the
psql client. The server refuses to run as root, so as root (CI) every server
binary runs as the user postgres through runuser; the files live in
TMPDIR/NAME (owned by postgres), which also holds the Unix socket and the log.
The server listens on 127.0.0.1 only. Run this file to self-test it.
"""

import os
import shutil
import signal
import subprocess
import time

import harness

BIN = "/usr/lib/postgresql/15/bin"  # its psql: /usr/bin/psql is a slower Perl wrapper
_NULL = "\x01NULL\x01"  # psql prints SQL NULL as this
_FS = "\x1f"            # psql field separator; records end with NUL (-0)


class PGError(RuntimeError):
    """A command (psql, initdb, pg_ctl) failed; .stderr holds its message."""

    def __init__(self, message, stderr=""):
        super().__init__(message)
        self.stderr = stderr


def _as_postgres(args):
    """The command running args as the user postgres when we are root."""
    args = [str(a) for a in args]
    return (["runuser", "-u", "postgres", "--"] + args) if os.geteuid() == 0 else args


def _stat(pid):
    """The fields of /proc/PID/stat after the command name, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def _copy_field(v):
    """One value in COPY's text format."""
    if v is None:
        return "\\N"
    return (str(v).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r"))


class PG:
    """One PostgreSQL server (restartable) with superuser and database `sluice`.

    Attributes: port, conninfo ("host=127.0.0.1 port=N dbname=sluice user=sluice";
    add password=... yourself in password mode), pid (the postmaster's),
    password, base (TMPDIR/NAME: data/, log, socket), data, log_path.
    password=None: trust authentication. With a password, every connection
    (TCP and socket) needs it (scram-sha-256); sql() and copy_in() pass it.
    conf: extra postgresql.conf settings, e.g. {"max_connections": 20}.
    cleanup: close() removes TMPDIR/NAME."""

    def __init__(self, tmpdir, name="pg", password=None, conf=None, cleanup=False,
                 start_timeout=60.0):
        self.base = os.path.join(os.path.abspath(tmpdir), name)
        self.data, self.log_path = os.path.join(self.base, "data"), os.path.join(self.base, "log")
        self.password, self.cleanup, self.start_timeout = password, cleanup, start_timeout
        self.pid = self._pid_start = self.port = None
        os.makedirs(self.base, 0o700)
        pwfile = os.path.join(self.base, "pwfile")  # initdb reads the password from it
        with open(pwfile, "w") as f:
            f.write(f"{password}\n")
        if os.geteuid() == 0:
            for path in (self.base, pwfile):
                shutil.chown(path, "postgres", "postgres")
            # postgres must be able to traverse tmpdir (mkdtemp makes it 0700 root).
            os.chmod(tmpdir, os.stat(tmpdir).st_mode | 0o011)
            if self._run(_as_postgres(["test", "-w", self.base]), check=False).returncode:
                raise RuntimeError(f"user postgres cannot reach {self.base} (need o+x above)")
        try:
            self._run(_as_postgres([f"{BIN}/initdb", "-D", self.data, "-U", "sluice", "-E",
                                    "UTF8", "--locale=C", "--no-sync", "-A"] + (
                ["trust"] if password is None else ["scram-sha-256", "--pwfile=" + pwfile])))
        finally:
            os.unlink(pwfile)
        # A socket path longer than 107 bytes is refused: then TCP only.
        sockdir = self.base if len(self.base) < 90 else ""
        settings = {"listen_addresses": "127.0.0.1", "unix_socket_directories": sockdir}
        settings.update(conf or {})
        for attempt in range(5):  # the free port may be taken before the server binds it
            self.port = harness.free_port()
            settings["port"] = self.port
            with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
                for k, v in settings.items():
                    f.write(f"{k} = '{str(v).replace(chr(39), chr(39) * 2)}'\n")
            log_at = len(self.log())
            try:
                self.start()
                break
            except RuntimeError:
                if attempt == 4 or "already in use" not in self.log()[log_at:]:
                    raise
        self.conninfo = f"host=127.0.0.1 port={self.port} dbname=sluice user=sluice"
        try:
            self.sql("CREATE DATABASE sluice", db="postgres")
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _run(self, args, check=True, input=None, env=None, timeout=120.0):
        """Runs a command in self.base (postgres may not enter our cwd)."""
        r = subprocess.run([str(a) for a in args], input=input, capture_output=True, env=env,
                           cwd=self.base, timeout=timeout)
        if check and r.returncode != 0:
            err = r.stderr.decode("utf-8", "replace")
            raise PGError(f"{' '.join(map(str, args[:6]))} ... exited {r.returncode}:\n{err}"
                          f"{r.stdout.decode('utf-8', 'replace')}", err)
        return r

    def _psql(self, db, args, input=None, timeout=120.0):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGPASSFILE=os.path.join(self.base, "none"), PGCONNECT_TIMEOUT="10",
                   PGCLIENTENCODING="UTF8")
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        return self._run([f"{BIN}/psql", "-X", "-w", "-q", "-v", "ON_ERROR_STOP=1", "-h",
                          "127.0.0.1", "-p", self.port, "-U", "sluice", "-d", db] + args,
                         input=input, env=env, timeout=timeout)

    def log(self):
        """The server's log so far."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def sql(self, text, db="sluice", timeout=120.0):
        """Runs SQL (one or more statements, sent as one query string, so they
        run in one implicit transaction unless they use BEGIN/COMMIT; run
        CREATE DATABASE or VACUUM alone). Returns the last result's rows as
        tuples of str (None for NULL); [] for a command without rows.
        Raises PGError with psql's stderr on an error."""
        out = self._psql(db, ["-At", "-F", _FS, "-0", "-P", "null=" + _NULL,
                              "-v", "SHOW_ALL_RESULTS=off", "-c", text], timeout=timeout)
        out = out.stdout.decode("utf-8")  # every record ends with NUL
        return [tuple(None if f == _NULL else f for f in rec.split(_FS))
                for rec in out.split("\0")[:-1]]

    def copy_in(self, table, rows, columns, db="sluice", timeout=600.0):
        """Bulk-loads rows (sequences of values; None is NULL, others go
        through str()) into table's columns with psql's \\copy in text format.
        Returns the seconds the load took (psql start to exit; the rows are
        encoded before timing): the raw COPY baseline for benchmarks."""
        cols = columns if isinstance(columns, str) else ", ".join(columns)
        data = "".join("\t".join(map(_copy_field, row)) + "\n" for row in rows).encode()
        t0 = time.monotonic()
        self._psql(db, ["-c", f"\\copy {table} ({cols}) FROM pstdin"], input=data,
                   timeout=timeout)
        return time.monotonic() - t0

    def copy_out_binary(self, table, columns, path, db="sluice", timeout=600.0):
        """Writes table's columns to path in COPY's binary format (psql \\copy TO)."""
        cols = columns if isinstance(columns, str) else ", ".join(columns)
        self._psql(db, ["-c", f"\\copy {table} ({cols}) TO '{path}' WITH (FORMAT binary)"],
                   timeout=timeout)

    def copy_in_binary(self, table, columns, path, db="sluice", timeout=600.0):
        """Loads path (COPY binary format) into table with psql \\copy; returns
        the seconds it took: the raw binary COPY baseline for benchmarks."""
        cols = columns if isinstance(columns, str) else ", ".join(columns)
        t0 = time.monotonic()
        self._psql(db, ["-c", f"\\copy {table} ({cols}) FROM '{path}' WITH (FORMAT binary)"],
                   timeout=timeout)
        return time.monotonic() - t0

    def running(self):
        """True while the postmaster runs (its pid is alive and not reused)."""
        st = _stat(self.pid) if self.pid else None
        return st is not None and st[0] not in "ZX" and st[19] == self._pid_start

    def start(self):
        """Starts the server on the existing data dir and port (after stop()
        or kill(): crash recovery runs) and waits until it accepts connections."""
        r = self._run(_as_postgres([f"{BIN}/pg_ctl", "start", "-D", self.data, "-l",
                                    self.log_path, "-w", "-t", int(self.start_timeout)]),
                      check=False, timeout=self.start_timeout + 10)
        if r.returncode != 0:
            raise RuntimeError(f"postgres did not start (pg_ctl exited {r.returncode}); "
                               f"log ends:\n{self.log()[-3000:]}")
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            self.pid = int(f.readline())
        self._pid_start = _stat(self.pid)[19]
        ready = [f"{BIN}/pg_isready", "-q", "-h", "127.0.0.1", "-p", self.port]
        harness.wait_until(lambda: self._run(ready, check=False).returncode == 0,
                           self.start_timeout, f"postgres on port {self.port} to accept")

    def stop(self, mode="fast"):
        """Stops the server: mode "smart", "fast" (rolls back open transactions)
        or "immediate" (no checkpoint: the next start recovers). No-op if down."""
        if not self.running():
            return
        self._run(_as_postgres([f"{BIN}/pg_ctl", "stop", "-D", self.data, "-m", mode, "-w",
                                "-t", 60]), timeout=70)
        harness.wait_until(lambda: not self.running(), 10, "the postmaster to exit")

    def restart(self, mode="fast"):
        """stop(mode) then start()."""
        self.stop(mode)
        self.start()

    def _children(self):
        return [int(p) for p in os.listdir("/proc") if p.isdigit()
                and (_stat(p) or [0, 0])[1] == str(self.pid)]

    def kill(self):
        """Crashes the server: SIGKILLs the postmaster and all its processes
        at once (open transactions are lost, committed ones are in the WAL)
        and waits until they are gone. start() then runs crash recovery."""
        if not self.running():
            raise RuntimeError("postgres is not running")
        os.kill(self.pid, signal.SIGSTOP)  # no forking while we collect its children
        procs = [self.pid] + self._children()
        for p in procs:
            os.kill(p, signal.SIGKILL)  # cannot fail: unreaped children stay zombies
        harness.wait_until(lambda: all((_stat(p) or "Z")[0] in "ZX" for p in procs), 10,
                           "the killed postgres processes to exit")
        # If the dead postmaster stays an unreaped zombie, the next one would take
        # these lock files for live ones. Nothing runs now: drop them.
        for lock in ("data/postmaster.pid", f".s.PGSQL.{self.port}.lock"):
            if os.path.exists(os.path.join(self.base, lock)):
                os.unlink(os.path.join(self.base, lock))

    def cpu_seconds(self):
        """User+system CPU seconds used so far by the postmaster and its
        processes: live children, plus exited ones the postmaster reaped."""
        ticks = 0
        for p in [self.pid] + self._children():
            st = _stat(p)
            if st:
                ticks += sum(int(x) for x in st[11:15])  # utime stime cutime cstime
        return ticks / os.sysconf("SC_CLK_TCK")

    def close(self):
        """Stops the server (immediate) if it runs; removes TMPDIR/NAME if cleanup."""
        if self.running():
            self.stop("immediate")
        if self.cleanup:
            shutil.rmtree(self.base, ignore_errors=True)


def _selftest():
    import tempfile
    tmp = tempfile.mkdtemp(prefix="sluice-pg-")  # root-owned and 0700, like a test's
    t0 = time.monotonic()
    with PG(tmp, cleanup=True) as db:
        print(f"initdb + start + CREATE DATABASE: {time.monotonic() - t0:.2f} s")
        rows = db.sql("CREATE TABLE ev (id bigint PRIMARY KEY, site text, n int CHECK (n >= 0));"
                      "INSERT INTO ev VALUES (1, 'a', 1), (2, E'b\\tc\\nd', NULL);"
                      "SELECT id, site, n FROM ev ORDER BY id")
        assert rows == [("1", "a", "1"), ("2", "b\tc\nd", None)], rows
        assert db.sql("SELECT ''") == [("",)] and db.sql("SELECT 1 WHERE false") == []
        odd = ["x", "tab\there", "nl\nhere", "cr\rhere", "back\\slash", "\\N", "", None, "ünï"]
        gen = [(i, odd[i % len(odd)], i % 7 if i % 5 else None) for i in range(10, 100010)]
        secs = db.copy_in("ev", gen, ["id", "site", "n"])
        print(f"copy_in 100000 rows: {secs:.3f} s ({100000 / secs:,.0f} rows/s)")
        back = db.sql("SELECT id, site, n FROM ev WHERE id BETWEEN 10 AND 18 ORDER BY id")
        assert back == [tuple(None if v is None else str(v) for v in r) for r in gen[:9]], back
        try:
            db.sql("INSERT INTO ev VALUES (3, 'bad', -1)")
            raise AssertionError("CHECK violation did not raise")
        except PGError as e:
            assert "violates check constraint" in e.stderr, e.stderr
            print("CHECK violation raises PGError:", e.stderr.strip().splitlines()[0])
        print(f"server CPU so far: {db.cpu_seconds():.2f} s")
        db.sql("INSERT INTO ev VALUES (3, 'committed', 3)")
        old, t1 = db.pid, time.monotonic()
        db.kill()
        assert not db.running()
        t2 = time.monotonic()
        db.start()
        print(f"kill: {t2 - t1:.3f} s, start with crash recovery: {time.monotonic() - t2:.2f} s")
        assert db.pid != old and "automatic recovery in progress" in db.log()
        assert db.sql("SELECT count(*), max(site) FILTER (WHERE id = 3) FROM ev") == \
            [("100003", "committed")]
        t1 = time.monotonic()
        db.restart()
        print(f"restart (fast stop + start): {time.monotonic() - t1:.2f} s")
    assert not os.path.exists(os.path.join(tmp, "pg"))
    with PG(tmp, name="pgpw", password="s3cret") as db:
        assert db.sql("SELECT current_user") == [("sluice",)]
        for pw, ok in (("s3cret", True), ("wrong", False), (None, False)):
            env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
            env.update({"PGPASSFILE": "/nonexistent"}, **({"PGPASSWORD": pw} if pw else {}))
            r = subprocess.run([f"{BIN}/psql", "-X", "-w", "-At", "-c", "SELECT 42", db.conninfo],
                               capture_output=True, text=True, env=env)
            assert (r.returncode == 0 and r.stdout == "42\n") == ok, (pw, r)
            print(f"password {pw!r}: {'connects' if ok else r.stderr.strip()}")
    assert not db.running() and os.path.isdir(db.data)  # kept: cleanup=False
    shutil.rmtree(tmp)
    print(f"self-test passed in {time.monotonic() - t0:.2f} s")


if __name__ == "__main__":
    _selftest()
