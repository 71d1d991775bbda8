/* A minimal unit-test harness. A test file defines test functions with
 * TEST(name) and lists them in TEST_MAIN(...). Each failed CHECK prints
 * file:line and the expression; the run ends with "N passed, N failed". */
#ifndef SL_TEST_H
#define SL_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int test_failures_;

#define TEST(name) static void name(void)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            test_failures_++;                                                                      \
        }                                                                                          \
    } while (0)

#define CHECK_INT(a, b)                                                                            \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) {                                                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n", __FILE__, __LINE__,  \
                    #a, #b, a_, b_);                                                               \
            test_failures_++;                                                                      \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                                     \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (\"%s\" != \"%s\")\n", __FILE__,        \
                    __LINE__, #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");                     \
            test_failures_++;                                                                      \
        }                                                                                          \
    } while (0)

/* CHECK_CONTAINS(haystack, needle): the string contains the substring. */
#define CHECK_CONTAINS(h, n)                                                                       \
    do {                                                                                           \
        const char *h_ = (h), *n_ = (n);                                                           \
        if (h_ == NULL || strstr(h_, n_) == NULL) {                                                \
            fprintf(stderr, "%s:%d: CHECK failed: \"%s\" contains \"%s\"\n", __FILE__, __LINE__,   \
                    h_ ? h_ : "(null)", n_);                                                       \
            test_failures_++;                                                                      \
        }                                                                                          \
    } while (0)

typedef struct {
    const char *name;
    void (*fn)(void);
} test_case_t;

#define T(fn)                                                                                      \
    {                                                                                              \
#fn, fn                                                                                    \
    }

#define TEST_MAIN(...)                                                                             \
    int main(void)                                                                                 \
    {                                                                                              \
        static const test_case_t cases[] = {__VA_ARGS__};                                          \
        int passed = 0, failed = 0;                                                                \
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {                            \
            int before = test_failures_;                                                           \
            cases[i].fn();                                                                         \
            if (test_failures_ == before) {                                                        \
                passed++;                                                                          \
            } else {                                                                               \
                failed++;                                                                          \
                fprintf(stderr, "FAIL %s\n", cases[i].name);                                       \
            }                                                                                      \
        }                                                                                          \
        printf("%d passed, %d failed\n", passed, failed);                                          \
        return failed ? 1 : 0;                                                                     \
    }

#endif
