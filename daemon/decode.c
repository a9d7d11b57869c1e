/* decode.c - the decode pool: compressed frame -> cropped float pattern, in parallel. Each worker owns a scratch
 * buffer, so after warm-up a frame costs one malloc (its pattern) and the bslz4 blocks that cover the crop. */
#include <stdlib.h>
#include <unistd.h>

#include "aptd_int.h"
#include "aptomo/log.h"

static void *decode_main(void *arg)
{
    aptd *d = arg;
    apt_bytes scratch = {0};
    uint64_t failures = 0;
    aptd_frame *f;
    while ((f = aptd_queue_pop(d->decode_q, -1))) {
        aptd_series *s = f->series;
        float *out = aptd_pool_get(d->patterns);
        apt_pixels px = f->px;
        px.blob = (const uint8_t *)zmq_msg_data(&f->msg) + f->blob_off;
        apt_error err = {0};
        int rc = out ? apt_frame_decode_crop(&px, &s->crop, s->mask, out, &scratch, &err) : APT_ENOMEM;
        if (rc != APT_OK && (++failures <= 10 || failures % 1000 == 0))
            apt_warn("series %llu frame %llu undecodable: %s", (unsigned long long)s->id,
                     (unsigned long long)f->image_id, out ? err.msg : "out of memory");
        aptd_series_frame_done(d, s, f->image_id, out, rc == APT_OK);
        aptd_frame_unref(&f);
        aptd_queue_done(d->decode_q);
    }
    apt_bytes_free(&scratch);
    return NULL;
}

int aptd_decode_start(aptd *d, apt_error *err)
{
    int n = d->s.decode_threads;
    if (n <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? (int)cores : 1;
    }
    d->decoders = calloc((size_t)n, sizeof *d->decoders);
    if (!d->decoders)
        return apt_err(err, APT_ENOMEM, "decoder threads");
    for (int i = 0; i < n; i++) {
        if (pthread_create(&d->decoders[i], NULL, decode_main, d))
            return apt_err(err, APT_ENOMEM, "cannot start decoder thread %d", i);
        d->n_decoders = i + 1;
    }
    apt_info("%d decode threads, queue of %d frames", n, d->s.queue_frames);
    return APT_OK;
}

void aptd_decode_stop(aptd *d)
{
    aptd_queue_wait_idle(d->decode_q);
    aptd_queue_close(d->decode_q);
    for (int i = 0; i < d->n_decoders; i++)
        pthread_join(d->decoders[i], NULL);
    free(d->decoders);
    d->decoders = NULL;
    d->n_decoders = 0;
}
