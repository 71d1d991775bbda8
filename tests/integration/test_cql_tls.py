"""TLS of the CQL client (src/cql/conn.c) against cqlnode --tls-cert/--tls-key.

At test time the openssl CLI makes a throwaway CA, a server certificate it
signs for 127.0.0.1 and localhost, and a second, unrelated CA (nothing is
committed). Checks:
(a) cqlcli (tests/tools/cqlcli.c, built on conn.c) writes 300 rows with
    pipelined EXECUTEs over TLS and reads them back in one SELECT whose
    response spans several TLS records; the same with LZ4 over TLS; also
    with the host name check against "localhost" via --tls-server-name;
(b) a client trusting the wrong CA fails at once with the certificate
    verification error and the CA file named; a host name the certificate
    does not carry fails with a host name mismatch;
(c) a plain (non-TLS) client against the TLS port fails cleanly, well
    before its timeouts; a TLS client against a plain port also does;
(d) the DataStax Python driver (python3-cassandra, ssl_context) connects to
    the TLS node, reads the rows written in (a) and writes one more, which
    cqlcli then reads: an independent client agrees with our TLS framing;
(e) `sluice run` with the Cassandra sink (tls: true, tls_ca_file, host
    verification on, compression: lz4) writes records from a dev broker
    topic over TLS, read back with cqlcli; with the wrong CA the run fails
    at startup with the verification error.

(f) client certificates: a node started with --tls-client-ca requires one
    signed by the test CA. cqlcli with --tls-cert/--tls-key reads and writes;
    without a certificate, or with one from the other CA, it fails at once
    with a message about the client certificate;
    `sluice run` with tls_cert_file/tls_key_file writes through it."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

SINK_ROWS = 200

N_ROWS = 300
PAD = "x" * 200

SCRIPT_WRITE = f"""\
query CREATE KEYSPACE IF NOT EXISTS tls WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}
query CREATE TABLE IF NOT EXISTS tls.t (id int PRIMARY KEY, v text)
prepare ins INSERT INTO tls.t (id, v) VALUES (?, ?)
pipeline {N_ROWS} ins $i row$i-{PAD}
query SELECT * FROM tls.t
"""
SCRIPT_READ_ONE = """\
query SELECT * FROM tls.t WHERE id = ? ;; int:100000
"""
SCRIPT_SIMPLE = """\
query SELECT * FROM system.local
"""


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_certs(d):
    """CA, server cert for 127.0.0.1/localhost signed by it, another CA."""
    with open(os.path.join(d, "san.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n")
    for ca in ("ca", "otherca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key",
                "-out", f"{ca}.pem", "-days", "2", "-subj", f"/CN=sluice test {ca}", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
            "server.csr", "-subj", "/CN=localhost", cwd=d)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.cnf", cwd=d)
    # client certificates: one from the test CA, one from the other CA
    with open(os.path.join(d, "client.cnf"), "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=clientAuth\n")
    for name, ca in (("client", "ca"), ("otherclient", "otherca")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                f"{name}.csr", "-subj", f"/CN=sluice {name}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", "client.cnf",
                cwd=d)


def start_node(tmpdir, name, tls, client_ca=None):
    port = harness.free_port()
    ready = os.path.join(tmpdir, f"{name}.ready")
    args = [harness.binary("cqlnode"), "--port", port, "--ready-file", ready, "--lz4"]
    if tls:
        args += ["--tls-cert", os.path.join(tmpdir, "server.pem"),
                 "--tls-key", os.path.join(tmpdir, "server.key")]
    if client_ca:
        args += ["--tls-client-ca", client_ca]
    node = harness.Proc(args, name, tmpdir)
    harness.wait_until(lambda: os.path.exists(ready) or not node.running(), 10,
                       f"{name}'s ready file")
    return node, port


def cli(tmpdir, port, script, *opts, timeout=30):
    path = os.path.join(tmpdir, "script.cql")
    with open(path, "w") as f:
        f.write(script)
    t0 = time.monotonic()
    r = harness.run([harness.binary("cqlcli"), "--host", "127.0.0.1", "--port", port, *opts,
                     path], timeout=timeout, check=False)
    return (r.returncode, r.stdout.decode("utf-8", "replace"),
            r.stderr.decode("utf-8", "replace"), time.monotonic() - t0)


def rows_of(stdout):
    """The rows printed after the last "rows N" line."""
    lines = stdout.splitlines()
    for k in range(len(lines) - 1, -1, -1):
        if lines[k].startswith("rows "):
            return [json.loads(x) for x in lines[k + 1:] if x.startswith("{")]
    return None


def sink_pipeline(tmpdir, brokers, port, ca, name, extra=""):
    path = os.path.join(tmpdir, name + ".yaml")
    with open(path, "w") as f:
        f.write(f"""source:
  kafka:
    brokers: {brokers}
    topics: [tlsin]
    group: {name}
    properties: {{session.timeout.ms: 6000}}
schema:
  id: {{type: int32, required: true}}
  v:  {{type: string, required: true}}
dead_letter: {{file: {{path: {tmpdir}/{name}.dlq.jsonl}}}}
sink:
  cassandra:
    contact_points: [127.0.0.1]
    port: {port}
    keyspace: tls
    statement: "INSERT INTO s (id, v) VALUES (:id, :v)"
    compression: lz4
    startup_timeout: 3s
    tls: true
    tls_ca_file: {ca}
    tls_verify_host: true
{extra}runtime: {{lanes: 1, batch_size: 100}}
""")
    return path


def check_sink(checks, tmpdir, port, ca, other):
    rc, out, err, _ = cli(tmpdir, port, "query CREATE TABLE IF NOT EXISTS tls.s "
                          "(id int PRIMARY KEY, v text)\n", "--tls-ca", ca)
    if not checks.check(rc == 0, "(e) table for the sink created over TLS", err[-1000:]):
        return
    with harness.DevBroker(["tlsin:1"], tmpdir=tmpdir) as broker:
        harness.kcat_produce(broker.bootstrap, "tlsin",
                             [(str(i), json.dumps({"id": i, "v": f"s{i}"}))
                              for i in range(SINK_ROWS)], delim="\t")
        bad = sink_pipeline(tmpdir, broker.bootstrap, port, other, "sink-badca")
        r = harness.run([harness.binary("sluice"), "run", bad, "--until-end"], timeout=60,
                        check=False)
        err = r.stderr.decode("utf-8", "replace")
        print("wrong-CA sink run ends with:", err.strip().splitlines()[-1:], flush=True)
        checks.check(r.returncode != 0 and "certificate verification" in err and other in err,
                     "(e) the sink with the wrong CA fails at startup naming the verification "
                     "error and the CA file", f"exit {r.returncode}\n{err[-1500:]}")
        good = sink_pipeline(tmpdir, broker.bootstrap, port, ca, "sink-tls")
        r = harness.run([harness.binary("sluice"), "run", good, "--until-end"], timeout=60,
                        check=False)
        err = r.stderr.decode("utf-8", "replace")
        checks.check(r.returncode == 0 and f"out={SINK_ROWS} " in err,
                     f"(e) sluice run writes all {SINK_ROWS} records through the TLS sink",
                     f"exit {r.returncode}\n{err[-1500:]}")
    rc, out, err, _ = cli(tmpdir, port, "query SELECT * FROM tls.s\n", "--tls-ca", ca)
    rows = rows_of(out) or []
    checks.check(sorted((r["id"], r["v"]) for r in rows)
                 == [(i, f"s{i}") for i in range(SINK_ROWS)],
                 "(e) every record the sink wrote over TLS is stored", f"{len(rows)} rows")


def check_client_certs(checks, tmpdir, ca):
    cert = [os.path.join(tmpdir, "client.pem"), os.path.join(tmpdir, "client.key")]
    other = [os.path.join(tmpdir, "otherclient.pem"), os.path.join(tmpdir, "otherclient.key")]
    node, port = start_node(tmpdir, "cqlnode-mtls", tls=True, client_ca=ca)
    with node:
        rc, out, err, _ = cli(tmpdir, port, "query CREATE KEYSPACE IF NOT EXISTS tls WITH "
                              "replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"
                              "\nquery CREATE TABLE IF NOT EXISTS tls.s (id int PRIMARY KEY, "
                              "v text)\n", "--tls-ca", ca, "--tls-cert", cert[0], "--tls-key",
                              cert[1])
        checks.check(rc == 0, "(f) with a client certificate cqlcli creates the schema",
                     f"rc {rc}\n{err[-1500:]}")
        for label, opts in (("no client certificate", []),
                            ("a client certificate of another CA",
                             ["--tls-cert", other[0], "--tls-key", other[1]])):
            rc, out, err, secs = cli(tmpdir, port, SCRIPT_SIMPLE, "--tls-ca", ca, *opts)
            checks.check(rc != 0 and "TLS" in err and "client certificate" in err and secs < 5,
                         f"(f) with {label} the client fails at once, pointing at the client "
                         "certificate",
                         f"rc {rc} after {secs:.1f}s\n{err[-1500:]}")
        with harness.DevBroker(["tlsin:1"], tmpdir=tmpdir) as broker:
            harness.kcat_produce(broker.bootstrap, "tlsin",
                                 [(str(i), json.dumps({"id": i, "v": f"s{i}"}))
                                  for i in range(SINK_ROWS)], delim="\t")
            cfg = sink_pipeline(tmpdir, broker.bootstrap, port, ca, "sink-mtls",
                                extra=f"    tls_cert_file: {cert[0]}\n"
                                f"    tls_key_file: {cert[1]}\n")
            r = harness.run([harness.binary("sluice"), "run", cfg, "--until-end"], timeout=60,
                            check=False)
            err = r.stderr.decode("utf-8", "replace")
            checks.check(r.returncode == 0 and f"out={SINK_ROWS} " in err,
                         "(f) the sink with tls_cert_file/tls_key_file writes every record",
                         f"exit {r.returncode}\n{err[-1500:]}")
        rc, out, err, _ = cli(tmpdir, port, "query SELECT * FROM tls.s\n", "--tls-ca", ca,
                              "--tls-cert", cert[0], "--tls-key", cert[1])
        rows = rows_of(out) or []
        checks.check(len(rows) == SINK_ROWS, "(f) ... and they are stored", f"{len(rows)} rows")
        checks.check(node.running(), "(f) the node survived the clients without certificates",
                     node.stderr()[-1500:])


def driver_main(port, ca):
    """Child process: the DataStax driver over TLS."""
    import ssl
    from cassandra.cluster import Cluster
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.check_hostname = True
    cluster = Cluster(["127.0.0.1"], port=port, ssl_context=ctx,
                      ssl_options={"server_hostname": "localhost"}, connect_timeout=10,
                      control_connection_timeout=10, protocol_version=4)
    session = cluster.connect()
    out = {"count": 0}
    for row in session.execute("SELECT * FROM tls.t"):
        out["count"] += 1
        if row.id == 7:
            out["row7"] = row.v
    session.execute("INSERT INTO tls.t (id, v) VALUES (%s, %s)", (100000, "from the driver"))
    cluster.shutdown()
    print(json.dumps(out))


def test(checks):
    if shutil.which("openssl") is None:
        checks.check(False, "the openssl CLI is installed", "apt-get install openssl")
        return
    tmpdir = tempfile.mkdtemp(prefix="sluice-cqltls-")
    ok = False
    try:
        make_certs(tmpdir)
        ca = os.path.join(tmpdir, "ca.pem")
        other = os.path.join(tmpdir, "otherca.pem")
        node, port = start_node(tmpdir, "cqlnode-tls", tls=True)
        plain, pport = start_node(tmpdir, "cqlnode-plain", tls=False)
        with node, plain:
            if not checks.check(node.running() and plain.running(), "cqlnode started (TLS, plain)",
                                node.stderr() + plain.stderr()):
                return
            # (a) write and read back over TLS
            rc, out, err, _ = cli(tmpdir, port, SCRIPT_WRITE, "--tls-ca", ca)
            rows = rows_of(out)
            checks.check(rc == 0 and rows is not None and len(rows) == N_ROWS,
                         f"(a) cqlcli over TLS writes {N_ROWS} rows and reads them back",
                         f"rc {rc}\n{out[-2000:]}\n{err[-2000:]}")
            if rows:
                byid = {r["id"]: r["v"] for r in rows}
                checks.check(all(byid.get(i) == f"row{i}-{PAD}" for i in range(N_ROWS)),
                             "(a) every row read back over TLS has its value")
            rc, out, err, _ = cli(tmpdir, port, SCRIPT_WRITE, "--tls-ca", ca, "--lz4")
            rows = rows_of(out)
            checks.check(rc == 0 and rows is not None and len(rows) == N_ROWS,
                         "(a) the same with LZ4 compression over TLS",
                         f"rc {rc}\n{out[-2000:]}\n{err[-2000:]}")
            rc, out, err, _ = cli(tmpdir, port, SCRIPT_SIMPLE, "--tls-ca", ca,
                                  "--tls-server-name", "localhost")
            checks.check(rc == 0, "(a) host name check against localhost (SNI) passes",
                         f"rc {rc}\n{err[-2000:]}")

            # (b) wrong CA, wrong name
            rc, out, err, secs = cli(tmpdir, port, SCRIPT_SIMPLE, "--tls-ca", other)
            checks.check(rc != 0 and "certificate verification" in err and other in err
                         and secs < 5,
                         "(b) a wrong CA fails at once with the verification error and the CA "
                         "file named", f"rc {rc} after {secs:.1f}s\n{err[-2000:]}")
            rc, out, err, secs = cli(tmpdir, port, SCRIPT_SIMPLE, "--tls-ca", ca,
                                     "--tls-server-name", "cassandra.example")
            checks.check(rc != 0 and "hostname mismatch" in err and secs < 5,
                         "(b) a name the certificate lacks fails with a host name mismatch",
                         f"rc {rc} after {secs:.1f}s\n{err[-2000:]}")

            # (c) plain client vs TLS port, TLS client vs plain port: no hang
            rc, out, err, secs = cli(tmpdir, port, SCRIPT_SIMPLE)
            checks.check(rc != 0 and ("closed by the server" in err or "reset by peer" in err)
                         and secs < 4,
                         "(c) a plain client against the TLS port fails cleanly, no hang",
                         f"rc {rc} after {secs:.1f}s\n{err[-2000:]}")
            rc, out, err, secs = cli(tmpdir, pport, SCRIPT_SIMPLE, "--tls-ca", ca)
            checks.check(rc != 0 and "TLS" in err and secs < 4,
                         "(c) a TLS client against a plain port fails cleanly, no hang",
                         f"rc {rc} after {secs:.1f}s\n{err[-2000:]}")
            checks.check(node.running(), "the TLS node survived the bad clients",
                         node.stderr()[-2000:])

            # (d) the DataStax driver over TLS
            try:
                import cassandra  # noqa: F401
                have_driver = True
            except ImportError:
                have_driver = False
            if checks.check(have_driver, "the DataStax Python driver is installed",
                            "apt-get install python3-cassandra"):
                d = subprocess.run(["/usr/bin/python3", os.path.abspath(__file__), "--driver",
                                    str(port), ca], capture_output=True, text=True, timeout=60)
                res = None
                if d.returncode == 0 and d.stdout.strip():
                    res = json.loads(d.stdout.strip().splitlines()[-1])
                checks.check(res is not None and res["count"] == N_ROWS
                             and res.get("row7") == f"row7-{PAD}",
                             "(d) the DataStax driver over TLS reads the rows cqlcli wrote",
                             f"exit {d.returncode}\n{d.stdout[-1000:]}\n{d.stderr[-3000:]}")
                rc, out, err, _ = cli(tmpdir, port, SCRIPT_READ_ONE, "--tls-ca", ca)
                rows = rows_of(out)
                checks.check(rc == 0 and rows == [{"id": 100000, "v": "from the driver"}],
                             "(d) cqlcli over TLS reads the row the driver wrote",
                             f"rc {rc}\n{out[-1000:]}\n{err[-1000:]}")
            check_sink(checks, tmpdir, port, ca, other)
            check_client_certs(checks, tmpdir, ca)
            node.send_signal(signal.SIGTERM)
            checks.check(node.wait(10) == 0, "the TLS node exits 0 on SIGTERM", node.stderr())
        ok = checks.failed == 0
    finally:
        if ok:
            shutil.rmtree(tmpdir, ignore_errors=True)
        else:
            print(f"output kept in {tmpdir}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--driver":
        driver_main(int(sys.argv[2]), sys.argv[3])
    else:
        harness.main(test)
