#include <stdlib.h>

#include "core/watermark.h"
#include "test.h"

TEST(empty_has_nothing_to_commit)
{
    sl_wm_t wm;
    sl_wm_init(&wm);
    CHECK_INT(sl_wm_committable(&wm), -1);
    CHECK_INT(sl_wm_in_flight(&wm), 0);
    sl_wm_free(&wm);
}

TEST(in_order_completion_advances)
{
    sl_wm_t wm;
    sl_wm_init(&wm);
    uint64_t a = sl_wm_add(&wm, 10), b = sl_wm_add(&wm, 11), c = sl_wm_add(&wm, 12);
    CHECK_INT(sl_wm_committable(&wm), 10);
    sl_wm_done(&wm, a);
    CHECK_INT(sl_wm_committable(&wm), 11);
    sl_wm_done(&wm, b);
    sl_wm_done(&wm, c);
    CHECK_INT(sl_wm_committable(&wm), 13);
    CHECK_INT(sl_wm_in_flight(&wm), 0);
    sl_wm_free(&wm);
}

TEST(out_of_order_completion_holds_at_lowest_undone)
{
    sl_wm_t wm;
    sl_wm_init(&wm);
    uint64_t a = sl_wm_add(&wm, 0), b = sl_wm_add(&wm, 1), c = sl_wm_add(&wm, 5);
    sl_wm_done(&wm, c);
    CHECK_INT(sl_wm_committable(&wm), 0);
    sl_wm_done(&wm, b);
    CHECK_INT(sl_wm_committable(&wm), 0);
    CHECK_INT(sl_wm_in_flight(&wm), 3);
    sl_wm_done(&wm, a);
    CHECK_INT(sl_wm_committable(&wm), 6); /* gap 2..4 (compaction) is skipped */
    sl_wm_done(&wm, a);                   /* idempotent */
    CHECK_INT(sl_wm_committable(&wm), 6);
    sl_wm_free(&wm);
}

TEST(eof_moves_past_records_never_delivered)
{
    sl_wm_t wm;
    sl_wm_init(&wm);
    sl_wm_skip_to(&wm, 42); /* empty partition consumed up to its end */
    CHECK_INT(sl_wm_committable(&wm), 42);
    uint64_t a = sl_wm_add(&wm, 42);
    sl_wm_skip_to(&wm, 45); /* control records 43..44 */
    CHECK_INT(sl_wm_committable(&wm), 42);
    sl_wm_done(&wm, a);
    CHECK_INT(sl_wm_committable(&wm), 45);
    sl_wm_free(&wm);
}

TEST(ring_grows_and_wraps_under_random_completion)
{
    sl_wm_t wm;
    sl_wm_init(&wm);
    enum { N = 5000 };
    static uint64_t seqs[N];
    static int done[N];
    srand(7);
    int64_t off = 100, last = -1;
    for (int i = 0; i < N; i++) {
        seqs[i] = sl_wm_add(&wm, off);
        last = off;
        off += 1 + (rand() % 3);
    }
    /* complete in a random order; after each step the committable offset must
     * be the offset of the lowest undone entry */
    int remaining = N;
    while (remaining > 0) {
        int i = rand() % N;
        if (done[i]) {
            continue;
        }
        done[i] = 1;
        remaining--;
        sl_wm_done(&wm, seqs[i]);
    }
    CHECK_INT(sl_wm_committable(&wm), last + 1);
    CHECK_INT(sl_wm_in_flight(&wm), 0);
    /* reuse after wrap: the ring keeps working */
    uint64_t s = sl_wm_add(&wm, off + 10);
    CHECK_INT(sl_wm_committable(&wm), off + 10);
    sl_wm_done(&wm, s);
    CHECK_INT(sl_wm_committable(&wm), off + 11);
    sl_wm_free(&wm);
}

TEST(lowest_undone_is_tracked_exactly)
{
    sl_wm_t wm;
    sl_wm_init(&wm);
    enum { N = 300 };
    uint64_t seqs[N];
    int64_t offs[N];
    int done[N] = {0};
    for (int i = 0; i < N; i++) {
        offs[i] = i * 2;
        seqs[i] = sl_wm_add(&wm, offs[i]);
    }
    srand(11);
    for (int step = 0; step < N; step++) {
        int i;
        do {
            i = rand() % N;
        } while (done[i]);
        done[i] = 1;
        sl_wm_done(&wm, seqs[i]);
        int64_t expect = offs[N - 1] + 1;
        for (int k = 0; k < N; k++) {
            if (!done[k]) {
                expect = offs[k];
                break;
            }
        }
        CHECK_INT(sl_wm_committable(&wm), expect);
    }
    sl_wm_free(&wm);
}

TEST(reset_forgets)
{
    sl_wm_t wm;
    sl_wm_init(&wm);
    sl_wm_add(&wm, 5);
    sl_wm_reset(&wm);
    CHECK_INT(sl_wm_committable(&wm), -1);
    CHECK_INT(sl_wm_in_flight(&wm), 0);
    sl_wm_free(&wm);
}

TEST_MAIN(T(empty_has_nothing_to_commit), T(in_order_completion_advances),
          T(out_of_order_completion_holds_at_lowest_undone),
          T(eof_moves_past_records_never_delivered),
          T(ring_grows_and_wraps_under_random_completion), T(lowest_undone_is_tracked_exactly),
          T(reset_forgets))
