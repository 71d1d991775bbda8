/* The benchmark baseline: a minimal librdkafka high-level consumer that joins
 * a group, consumes every partition of a topic up to the end offset it had at
 * the start, touches each message (sums payload bytes) and exits. Same group
 * join cost and same end condition as `sluice run --until-end`, no parsing.
 *
 *   raw_consumer BROKERS TOPIC GROUP [key=value librdkafka properties...]
 * Prints to stderr: messages=N bytes=B seconds=S rate=R (first assignment to last message). */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: raw_consumer BROKERS TOPIC GROUP [prop=value...]\n");
        return 2;
    }
    const char *brokers = argv[1], *topic = argv[2], *group = argv[3];
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *props[][2] = {{"bootstrap.servers", brokers},
                              {"group.id", group},
                              {"auto.offset.reset", "earliest"},
                              {"enable.partition.eof", "true"},
                              {"session.timeout.ms", "6000"}};
    for (size_t i = 0; i < sizeof(props) / sizeof(props[0]); i++) {
        if (rd_kafka_conf_set(conf, props[i][0], props[i][1], err, sizeof(err))) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
    }
    for (int i = 4; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (eq == NULL) {
            fprintf(stderr, "bad property %s\n", argv[i]);
            return 2;
        }
        *eq = '\0';
        if (rd_kafka_conf_set(conf, argv[i], eq + 1, err, sizeof(err))) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (rk == NULL) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    rd_kafka_poll_set_consumer(rk);

    /* end offsets at the start */
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) || md->topic_cnt != 1) {
        fprintf(stderr, "metadata failed\n");
        return 1;
    }
    int np = md->topics[0].partition_cnt;
    int64_t *end = calloc((size_t)np, sizeof(int64_t));
    int64_t *pos = calloc((size_t)np, sizeof(int64_t));
    for (int p = 0; p < np; p++) {
        int64_t lo, hi;
        if (rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000)) {
            fprintf(stderr, "watermarks failed\n");
            return 1;
        }
        end[p] = hi;
        pos[p] = lo;
    }
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);

    rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(subs, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);

    long long n = 0, bytes = 0;
    double first = 0, last = 0;
    int done = 0;
    char *finished = calloc((size_t)np, 1);
    while (done < np) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 1000);
        if (m == NULL) {
            continue;
        }
        int p = m->partition;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF || m->err == 0) {
            if (m->err == 0) {
                if (n++ == 0) {
                    first = now_s();
                }
                last = now_s();
                bytes += (long long)m->len;
            }
            if (p >= 0 && p < np && !finished[p] && m->offset + (m->err == 0 ? 1 : 0) >= end[p]) {
                finished[p] = 1;
                done++;
            }
        } else {
            fprintf(stderr, "consumer error: %s\n", rd_kafka_message_errstr(m));
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    double secs = last - first;
    fprintf(stderr, "messages=%lld bytes=%lld seconds=%.3f rate=%.0f\n", n, bytes, secs,
            secs > 0 ? (double)n / secs : 0.0);
    free(end);
    free(pos);
    free(finished);
    return 0;
}
