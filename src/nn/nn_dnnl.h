/* nn_dnnl.h - what the two oneDNN backends share (nn_dnnl.c: inference; train_dnnl.c: training): the status check
 * and the context of an engine, a stream and a thread count. */
#ifndef APTOMO_NN_DNNL_H
#define APTOMO_NN_DNNL_H

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include "aptomo/error.h"

/* Return APT_ENOMEM / APT_EINVAL naming the oneDNN call when it fails (needs an `apt_error *err` in scope). */
#define NN_DNNL_CK(call, what)                                                                                       \
    do {                                                                                                             \
        dnnl_status_t s_ = (call);                                                                                   \
        if (s_ != dnnl_success)                                                                                      \
            return apt_err(err, s_ == dnnl_out_of_memory ? APT_ENOMEM : APT_EINVAL, "oneDNN %s: %s", what,          \
                           dnnl_status2str(s_));                                                                     \
    } while (0)

#define NN_DNNL_MAX_THREADS 64

typedef struct nn_dnnl_ctx {
    dnnl_engine_t eng;
    dnnl_stream_t st;
    int threads; /* threads 0 = one per core, at most NN_DNNL_MAX_THREADS */
} nn_dnnl_ctx;

/* A context on the heap (*ctxp set even on failure, for nn_dnnl_ctx_free). */
int nn_dnnl_ctx_new(void **ctxp, int threads, apt_error *err);
void nn_dnnl_ctx_free(void *ctx);

#endif
