/* apt_test.h - minimal assertion macros for the ctest executables: print file:line and the failed expression,
 * count failures, and make main() return non-zero. Each test program ends with APT_TEST_DONE(). */
#ifndef APT_TEST_H
#define APT_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int apt_test_failures = 0;
static int apt_test_checks = 0;

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        apt_test_checks++;                                                                   \
        if (!(cond)) {                                                                       \
            apt_test_failures++;                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);         \
        }                                                                                    \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                 \
    do {                                                                                     \
        apt_test_checks++;                                                                   \
        if (!(cond)) {                                                                       \
            apt_test_failures++;                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);         \
            fprintf(stderr, __VA_ARGS__);                                                    \
            fputc('\n', stderr);                                                             \
        }                                                                                    \
    } while (0)

#define CHECK_OK(expr, errp)                                                                 \
    do {                                                                                     \
        int rc_ = (expr);                                                                    \
        CHECK_MSG(rc_ == 0, "rc=%d: %s", rc_, (errp)->msg); /* errp: never NULL here */       \
    } while (0)

#define APT_TEST_DONE()                                                                      \
    do {                                                                                     \
        printf("%d checks, %d failed\n", apt_test_checks, apt_test_failures);                \
        return apt_test_failures ? 1 : 0;                                                    \
    } while (0)

#endif
