/* kprobe: small Kafka queries for integration tests.
 *
 *   kprobe committed BROKERS GROUP TOPIC   "partition committed_offset" per line
 *                                          (-1001 when the group has none)
 *   kprobe watermarks BROKERS TOPIC        "partition low high" per line
 *   kprobe count BROKERS TOPIC             sum of high - low over all partitions
 *
 * Exits 0 on success, 1 with a message on stderr on errors and timeouts,
 * 2 on usage errors. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#define KP_TIMEOUT_MS 10000

static const char kp_usage[] = "usage: kprobe committed BROKERS GROUP TOPIC\n"
                               "       kprobe watermarks BROKERS TOPIC\n"
                               "       kprobe count BROKERS TOPIC\n";

static void kp_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (level <= 4) {
        fprintf(stderr, "kprobe: librdkafka %s: %s\n", fac, buf);
    }
}

/* Creates a consumer handle that never subscribes; group may be NULL. */
static rd_kafka_t *kp_consumer(const char *brokers, const char *group)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr)) ||
        (group != NULL && rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof(errstr)))) {
        fprintf(stderr, "kprobe: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, kp_log_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, "kprobe: cannot create consumer: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

/* Returns the partition count of topic from metadata, or -1 after printing why.
 * Asks for all topics: a request naming the topic would make the dev broker
 * create it. */
static int kp_partition_count(rd_kafka_t *rk, const char *topic)
{
    const rd_kafka_metadata_t *md = NULL;
    int n = -1;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, KP_TIMEOUT_MS);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "kprobe: metadata: %s\n", rd_kafka_err2str(err));
        return -1;
    }
    const rd_kafka_metadata_topic_t *t = NULL;
    for (int i = 0; i < md->topic_cnt && t == NULL; i++) {
        if (strcmp(md->topics[i].topic, topic) == 0) {
            t = &md->topics[i];
        }
    }
    if (t == NULL) {
        fprintf(stderr, "kprobe: topic %s does not exist\n", topic);
    } else if (t->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "kprobe: topic %s: %s\n", topic, rd_kafka_err2str(t->err));
    } else if (t->partition_cnt <= 0) {
        fprintf(stderr, "kprobe: topic %s has no partitions\n", topic);
    } else {
        n = t->partition_cnt;
    }
    rd_kafka_metadata_destroy(md);
    return n;
}

static int kp_committed(rd_kafka_t *rk, const char *topic)
{
    int rc = 1;
    int n = kp_partition_count(rk, topic);
    if (n < 0) {
        return 1;
    }
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(n);
    for (int p = 0; p < n; p++) {
        rd_kafka_topic_partition_list_add(parts, topic, p);
    }
    rd_kafka_resp_err_t err = rd_kafka_committed(rk, parts, KP_TIMEOUT_MS);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "kprobe: committed offsets for %s: %s\n", topic, rd_kafka_err2str(err));
        goto out;
    }
    for (int i = 0; i < parts->cnt; i++) {
        if (parts->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "kprobe: committed offset of %s [%d]: %s\n", topic,
                    (int)parts->elems[i].partition, rd_kafka_err2str(parts->elems[i].err));
            goto out;
        }
    }
    for (int i = 0; i < parts->cnt; i++) {
        printf("%d %" PRId64 "\n", (int)parts->elems[i].partition, parts->elems[i].offset);
    }
    rc = 0;
out:
    rd_kafka_topic_partition_list_destroy(parts);
    return rc;
}

/* Prints "partition low high" lines, or the total high - low with sum_only. */
static int kp_watermarks(rd_kafka_t *rk, const char *topic, int sum_only)
{
    int n = kp_partition_count(rk, topic);
    if (n < 0) {
        return 1;
    }
    int64_t total = 0;
    for (int p = 0; p < n; p++) {
        int64_t lo, hi;
        rd_kafka_resp_err_t err =
            rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, KP_TIMEOUT_MS);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "kprobe: watermarks of %s [%d]: %s\n", topic, p, rd_kafka_err2str(err));
            return 1;
        }
        if (sum_only) {
            total += hi - lo;
        } else {
            printf("%d %" PRId64 " %" PRId64 "\n", p, lo, hi);
        }
    }
    if (sum_only) {
        printf("%" PRId64 "\n", total);
    }
    return 0;
}

int main(int argc, char **argv)
{
    rd_kafka_t *rk = NULL;
    int rc;
    if (argc == 5 && strcmp(argv[1], "committed") == 0) {
        if ((rk = kp_consumer(argv[2], argv[3])) == NULL) {
            return 1;
        }
        rc = kp_committed(rk, argv[4]);
    } else if (argc == 4 && (strcmp(argv[1], "watermarks") == 0 || strcmp(argv[1], "count") == 0)) {
        if ((rk = kp_consumer(argv[2], NULL)) == NULL) {
            return 1;
        }
        rc = kp_watermarks(rk, argv[3], strcmp(argv[1], "count") == 0);
    } else {
        fputs(kp_usage, stderr);
        return 2;
    }
    rd_kafka_destroy(rk);
    fflush(stdout);
    return rc;
}
