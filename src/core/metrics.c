#include "core/metrics.h"

const double sl_lat_bounds[SL_LAT_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                              0.05,   0.1,   0.25,   0.5,   1.0,  5.0};

void sl_metrics_observe_latency(sl_lane_metrics_t *m, int64_t us)
{
    double s = (double)us / 1e6;
    int b = 0;
    while (b < SL_LAT_BUCKETS && s > sl_lat_bounds[b]) {
        b++;
    }
    SL_M_ADD(m, lat_buckets[b], 1);
    SL_M_ADD(m, lat_sum_us, (uint64_t)(us > 0 ? us : 0));
    SL_M_ADD(m, lat_count, 1);
}

void sl_prom_header(sl_buf_t *out, const char *name, const char *type, const char *help)
{
    sl_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}
