/* series.c - frames -> series. Decides, under the assembler lock, which series a message belongs to: frames of a
 * series that is not current (stale), repeated image ids, frames beyond the bounds are counted and dropped here,
 * before any decoding. A series finishes when it has ended (end message, timeout, superseded, shutdown) and no
 * frame of it is still being decoded; then its patterns with positions go to reconstruction as one angle. A series
 * that finishes without its angle or positions while the metadata channel is on waits aside (bounded count, for
 * metadata.grace_s at most) for late scan metadata; ingest goes on meanwhile. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aptd_int.h"
#include "aptomo/log.h"

static void apply_meta(aptd *d, aptd_series *s, const apt_scanmeta *m);

aptd_series *aptd_series_new(aptd *d, const apt_stream_msg *start)
{
    aptd_series *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    atomic_init(&s->refs, 1);
    pthread_mutex_init(&s->mu, NULL);
    s->pool = d->patterns;
    s->id = start->series_id;
    snprintf(s->unique_id, sizeof s->unique_id, "%s", start->series_unique_id);
    s->version = start->version;
    s->config = start->config;
    s->t_start = s->t_last = apt_now();
    if (d->s.channel[0])
        snprintf(s->channel, sizeof s->channel, "%s", d->s.channel);
    else if (start->n_channels > 0)
        snprintf(s->channel, sizeof s->channel, "%s", start->channels[0]);
    return s;
}

static void series_free(aptd_series *s)
{
    if (s->frames)
        for (size_t i = 0; i < s->cap; i++)
            aptd_pool_put(s->pool, s->frames[i]);
    free(s->frames);
    free(s->pos);
    free(s->flags);
    free(s->mask);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void aptd_series_unref(aptd_series **sp)
{
    aptd_series *s = *sp;
    *sp = NULL;
    if (s && atomic_fetch_sub(&s->refs, 1) == 1)
        series_free(s);
}

void aptd_frame_unref(aptd_frame **fp)
{
    aptd_frame *f = *fp;
    *fp = NULL;
    if (f && atomic_fetch_sub(&f->refs, 1) == 1) {
        zmq_msg_close(&f->msg);
        aptd_series_unref(&f->series);
        free(f);
    }
}

/* Grow the per-image arrays to hold index id; caller holds s->mu. */
static int series_grow(aptd *d, aptd_series *s, uint64_t id)
{
    if (id < s->cap)
        return 0;
    if (id >= d->s.max_frames_per_series)
        return -1;
    size_t nc = s->cap ? s->cap : 256;
    while (nc <= id)
        nc *= 2;
    if (nc > d->s.max_frames_per_series)
        nc = (size_t)d->s.max_frames_per_series;
    float **fr = realloc(s->frames, nc * sizeof *fr);
    if (!fr)
        return -1;
    s->frames = fr;
    double *pos = realloc(s->pos, nc * 2 * sizeof *pos);
    if (!pos)
        return -1;
    s->pos = pos;
    uint8_t *fl = realloc(s->flags, nc);
    if (!fl)
        return -1;
    s->flags = fl;
    memset(s->frames + s->cap, 0, (nc - s->cap) * sizeof *fr);
    memset(s->flags + s->cap, 0, nc - s->cap);
    s->cap = nc;
    return 0;
}

static void apply_meta(aptd *d, aptd_series *s, const apt_scanmeta *m)
{
    if (m->has_angle) {
        s->has_angle = 1;
        s->angle_deg = m->angle_deg;
    }
    for (size_t i = 0; i < m->n_positions; i++) {
        uint64_t id = m->frame0 + i;
        if (series_grow(d, s, id)) {
            apt_warn("series %llu: positions beyond %llu frames ignored", (unsigned long long)s->id,
                     (unsigned long long)d->s.max_frames_per_series);
            break;
        }
        s->pos[2 * id] = m->positions_m[2 * i];
        s->pos[2 * id + 1] = m->positions_m[2 * i + 1];
        s->flags[id] |= SF_HAS_POS;
    }
}

static void decode_mask(aptd_series *s, const apt_stream_msg *m, uint64_t max_pixels)
{
    const apt_pixels *mk = &m->mask;
    if (!mk->blob)
        return;
    size_t n = (size_t)mk->width * mk->height;
    if (!n || n > max_pixels) {
        apt_warn("series %llu: pixel mask of %ux%u ignored", (unsigned long long)s->id, mk->width, mk->height);
        return;
    }
    uint8_t *raw = malloc(n * mk->elem_size);
    uint32_t *mask = malloc(n * sizeof *mask);
    apt_error err = {0};
    if (raw && mask && apt_frame_decode(mk, raw, n * mk->elem_size, &err) == APT_OK) {
        for (size_t i = 0; i < n; i++)
            mask[i] = mk->elem_size == 4 ? ((uint32_t *)raw)[i]
                    : mk->elem_size == 2 ? ((uint16_t *)raw)[i] : raw[i];
        s->mask = mask;
        s->config.width = mk->width; /* the mask must match the frames; checked at the first image */
        s->config.height = mk->height;
        mask = NULL;
    } else {
        apt_warn("series %llu: pixel mask not decodable: %s", (unsigned long long)s->id, err.msg);
    }
    free(raw);
    free(mask);
}

void aptd_on_start(aptd *d, const apt_stream_msg *m)
{
    aptd_series *s = aptd_series_new(d, m);
    if (!s) {
        apt_error_log("series %llu: out of memory", (unsigned long long)m->series_id);
        return;
    }
    decode_mask(s, m, d->s.max_frame_pixels);
    if (m->user_json) {
        apt_scanmeta meta;
        apt_error err = {0};
        if (apt_scanmeta_parse(m->user_json, m->user_json_len, d->s.max_frames_per_series, &meta, &err) == APT_OK) {
            apply_meta(d, s, &meta);
            apt_scanmeta_clear(&meta);
        } else {
            apt_warn("series %llu: user data ignored: %s", (unsigned long long)s->id, err.msg);
        }
    }
    pthread_mutex_lock(&d->mu);
    aptd_series *old = d->current;
    for (int i = 0; i < d->n_pending; i++) {
        if (d->pending[i].series != s->id)
            continue;
        apply_meta(d, s, &d->pending[i].meta);
        apt_scanmeta_clear(&d->pending[i].meta);
        d->pending[i] = d->pending[--d->n_pending];
        i--;
    }
    s->index = d->series_count++;
    d->current = s;
    pthread_mutex_unlock(&d->mu);
    atomic_fetch_add(&d->series_started, 1);
    atomic_store(&d->current_series, s->id);
    atomic_store(&d->state, APTD_ACQUIRING);
    apt_info("series %llu started (v%d%s%s, angle %s)", (unsigned long long)s->id, s->version,
             s->channel[0] ? ", channel " : "", s->channel, s->has_angle ? "known" : "pending");
    if (old) {
        aptd_series_end(d, old, "superseded");
        aptd_series_unref(&old);
    }
}

/* Returns a referenced series if m belongs to the current, still open series. */
static aptd_series *current_for(aptd *d, const apt_stream_msg *m)
{
    aptd_series *s = NULL;
    pthread_mutex_lock(&d->mu);
    if (d->current && d->current->id == m->series_id &&
        (!m->series_unique_id[0] || !d->current->unique_id[0] ||
         !strcmp(m->series_unique_id, d->current->unique_id))) {
        s = d->current;
        atomic_fetch_add(&s->refs, 1);
    }
    pthread_mutex_unlock(&d->mu);
    return s;
}

static const apt_pixels *pick_channel(const aptd_series *s, const apt_stream_msg *m)
{
    if (m->version != 2 || !s->channel[0])
        return &m->pixels;
    for (int i = 0; i < m->n_chan; i++)
        if (!strcmp(m->chan[i].channel, s->channel))
            return &m->chan[i];
    return NULL;
}

static void place_crop(aptd *d, aptd_series *s)
{
    double cy = d->s.beam_center[0], cx = d->s.beam_center[1];
    if (!isfinite(cy) || !isfinite(cx)) {
        cy = s->config.beam_center_y;
        cx = s->config.beam_center_x;
    }
    apt_error err = {0};
    if (apt_crop_place(s->width, s->height, cy, cx, d->s.crop, &s->crop, &err) == APT_OK)
        s->geometry_ok = 1;
    else
        apt_error_log("series %llu: %s; its frames are dropped as undecodable", (unsigned long long)s->id, err.msg);
    if (s->mask && (s->config.width != s->width || s->config.height != s->height)) {
        apt_warn("series %llu: pixel mask %ux%u does not match frames %ux%u, ignored", (unsigned long long)s->id,
                 s->config.width, s->config.height, s->width, s->height);
        free(s->mask);
        s->mask = NULL;
    }
}

int aptd_on_image(aptd *d, const apt_stream_msg *m, zmq_msg_t *msg, const uint8_t *msg_base)
{
    atomic_fetch_add(&d->frames_received, 1);
    aptd_series *s = current_for(d, m);
    if (!s) {
        atomic_fetch_add(&d->dropped_stale, 1);
        return 0;
    }
    const apt_pixels *px = pick_channel(s, m);
    uint64_t id = m->image_id;
    int verdict = 0; /* 0 accept, 1 duplicate, 2 overflow, 3 undecodable */
    pthread_mutex_lock(&s->mu);
    s->received++;
    s->t_last = apt_now();
    if (s->ended) {
        pthread_mutex_unlock(&s->mu);
        aptd_series_unref(&s);
        atomic_fetch_add(&d->dropped_stale, 1);
        return 0;
    }
    if (series_grow(d, s, id)) {
        verdict = 2;
    } else if (s->flags[id] & SF_SEEN) {
        verdict = 1;
    } else {
        s->flags[id] |= SF_SEEN;
        if (!px || (uint64_t)px->width * px->height > d->s.max_frame_pixels) {
            verdict = 3;
        } else {
            if (!s->width) {
                s->width = px->width;
                s->height = px->height;
                s->elem_size = px->elem_size;
                place_crop(d, s);
            }
            if (!s->geometry_ok || px->width != s->width || px->height != s->height)
                verdict = 3;
        }
    }
    if (verdict == 0 && m->user_json) {
        apt_scanmeta meta;
        if (apt_scanmeta_parse(m->user_json, m->user_json_len, 1, &meta, NULL) == APT_OK) {
            if (meta.has_pos) {
                s->pos[2 * id] = meta.pos_m[0];
                s->pos[2 * id + 1] = meta.pos_m[1];
                s->flags[id] |= SF_HAS_POS;
            }
            apt_scanmeta_clear(&meta);
        }
    }
    if (verdict == 0) {
        s->accepted++;
        s->inflight++;
    } else if (verdict == 1) {
        s->dup++;
    } else if (verdict == 2) {
        s->overflow++;
    } else {
        s->flags[id] |= SF_BAD;
        s->undecodable++;
    }
    pthread_mutex_unlock(&s->mu);
    if (verdict) {
        atomic_fetch_add(verdict == 1 ? &d->dropped_duplicate
                         : verdict == 2 ? &d->dropped_overflow : &d->dropped_undecodable, 1);
        aptd_series_unref(&s);
        return 0;
    }

    aptd_frame *f = calloc(1, sizeof *f);
    if (!f) {
        aptd_series_frame_done(d, s, id, NULL, 0);
        aptd_series_unref(&s);
        return 0;
    }
    atomic_init(&f->refs, 1 + (d->have_spool ? 1 : 0));
    f->series = s;
    f->image_id = id;
    f->px = *px;
    f->blob_off = (size_t)(px->blob - msg_base);
    zmq_msg_init(&f->msg);
    zmq_msg_move(&f->msg, msg);
    atomic_fetch_add(&d->frames_accepted, 1);
    if (d->have_spool && aptd_queue_push(d->spool_q, f) != 0) {
        aptd_frame *share = f; /* the spool's share of the frame, not taken */
        aptd_frame_unref(&share);
    }
    if (aptd_queue_push(d->decode_q, f) != 0) {
        aptd_series_frame_done(d, f->series, id, NULL, 0);
        aptd_frame_unref(&f);
    }
    return 1;
}

void aptd_on_end(aptd *d, const apt_stream_msg *m)
{
    aptd_series *s = current_for(d, m);
    if (!s) {
        apt_warn("end of series %llu, which is not the current one: ignored", (unsigned long long)m->series_id);
        return;
    }
    aptd_series_end(d, s, "end");
    aptd_series_unref(&s);
}

/* Hand the finished series to reconstruction: decoded frames with a position, in image order. */
static void series_release(aptd *d, aptd_series *s)
{
    if (d->have_spool)
        aptd_spool_series_done(d, s);
    pthread_mutex_lock(&s->mu);
    uint64_t received = s->received;
    pthread_mutex_unlock(&s->mu);
    if (received == 0) { /* an empty series is no angle: nothing to reconstruct or report */
        atomic_fetch_add(&d->series_completed, 1);
        apt_info("series %llu ended (%s) without frames", (unsigned long long)s->id, s->reason);
        return;
    }
    aptd_angle *a = calloc(1, sizeof *a);
    size_t n = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->cap; i++)
        if ((s->flags[i] & (SF_DECODED | SF_HAS_POS)) == (SF_DECODED | SF_HAS_POS))
            n++;
    if (a) {
        a->frames = malloc((n ? n : 1) * sizeof *a->frames);
        a->pos = malloc((n ? n : 1) * 2 * sizeof *a->pos);
    }
    if (!a || !a->frames || !a->pos) {
        pthread_mutex_unlock(&s->mu);
        apt_error_log("series %llu: out of memory handing it to reconstruction", (unsigned long long)s->id);
        if (a) {
            free(a->frames);
            free(a->pos);
            free(a);
        }
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < s->cap; i++) {
        if (!(s->flags[i] & SF_DECODED))
            continue;
        if (!(s->flags[i] & SF_HAS_POS)) {
            s->nopos++;
            aptd_pool_put(d->patterns, s->frames[i]);
            s->frames[i] = NULL;
            continue;
        }
        a->frames[k] = s->frames[i];
        s->frames[i] = NULL;
        a->pos[2 * k] = s->pos[2 * i];
        a->pos[2 * k + 1] = s->pos[2 * i + 1];
        k++;
    }
    a->n_frames = k;
    a->series_id = s->id;
    a->index = s->index;
    snprintf(a->unique_id, sizeof a->unique_id, "%s", s->unique_id);
    a->has_angle = s->has_angle;
    a->angle_deg = s->angle_deg;
    a->n = s->crop.n;
    a->frames_received = s->received;
    a->dup = s->dup;
    a->undecodable = s->undecodable;
    a->nopos = s->nopos;
    a->overflow = s->overflow;
    a->frames_dropped = s->dup + s->undecodable + s->nopos + s->overflow;
    snprintf(a->reason, sizeof a->reason, "%s", s->reason);
    a->seconds_acquire = s->t_last - s->t_start;
    pthread_mutex_unlock(&s->mu);

    atomic_fetch_add(&d->dropped_nopos, a->nopos);
    atomic_fetch_add(&d->series_completed, 1);
    apt_info("series %llu complete (%s): %zu frames used, %llu received, %llu dropped (dup %llu, undecodable "
             "%llu, no position %llu, overflow %llu)",
             (unsigned long long)a->series_id, a->reason, a->n_frames, (unsigned long long)a->frames_received,
             (unsigned long long)a->frames_dropped, (unsigned long long)a->dup,
             (unsigned long long)a->undecodable, (unsigned long long)a->nopos, (unsigned long long)a->overflow);
    if (aptd_angleq_push(d, a) != 0)
        aptd_angle_free(d, &a);
}

/* Still missing scan metadata: no angle, or a decoded frame without a position. Caller holds s->mu. */
static int series_lacks_meta(const aptd_series *s)
{
    if (!s->has_angle)
        return 1;
    for (size_t i = 0; i < s->cap; i++)
        if ((s->flags[i] & (SF_DECODED | SF_HAS_POS)) == SF_DECODED)
            return 1;
    return 0;
}

/* Take s out of the held list (caller holds d->mu); returns the list's reference, or NULL if s is not held. */
static aptd_series *held_take(aptd *d, const aptd_series *s)
{
    for (int i = 0; i < d->n_held; i++) {
        if (d->held[i] != s)
            continue;
        aptd_series *t = d->held[i];
        pthread_mutex_lock(&t->mu);
        t->held = 0;
        pthread_mutex_unlock(&t->mu);
        memmove(&d->held[i], &d->held[i + 1], (size_t)(d->n_held - i - 1) * sizeof d->held[0]);
        memmove(&d->held_since[i], &d->held_since[i + 1], (size_t)(d->n_held - i - 1) * sizeof d->held_since[0]);
        d->n_held--;
        return t;
    }
    return NULL;
}

/* A series whose frames are all decoded. Metadata may lag the detector (another process, another network path):
 * when the metadata channel is on and the series still lacks its angle or positions, it waits aside for up to
 * metadata.grace_s, while the next series is received, instead of losing its frames as no_position. */
static void series_finish(aptd *d, aptd_series *s)
{
    int hold = 0;
    aptd_series *evict = NULL;
    if (d->s.metadata_endpoint[0] && d->s.metadata_grace_s > 0 && atomic_load(&d->running)) {
        /* decided and listed under d->mu, which aptd_on_meta holds too: no metadata slips in between */
        pthread_mutex_lock(&d->mu);
        pthread_mutex_lock(&s->mu);
        hold = s->received > 0 && series_lacks_meta(s);
        s->held = hold;
        pthread_mutex_unlock(&s->mu);
        if (hold) {
            if (d->n_held == APTD_MAX_HELD) /* bounded: the oldest goes on without its metadata */
                evict = held_take(d, d->held[0]);
            atomic_fetch_add(&s->refs, 1);
            d->held_since[d->n_held] = apt_now();
            d->held[d->n_held++] = s;
        }
        pthread_mutex_unlock(&d->mu);
    }
    if (!hold) {
        series_release(d, s);
        return;
    }
    apt_info("series %llu: waiting up to %.1f s for its scan metadata", (unsigned long long)s->id,
             d->s.metadata_grace_s);
    if (evict) {
        apt_warn("series %llu: more than %d series wait for metadata; handed on without it",
                 (unsigned long long)evict->id, APTD_MAX_HELD);
        atomic_fetch_add(&d->meta_late_expired, 1);
        series_release(d, evict);
        aptd_series_unref(&evict);
    }
}

void aptd_series_release_held(aptd *d)
{
    for (;;) {
        pthread_mutex_lock(&d->mu);
        aptd_series *s = d->n_held ? held_take(d, d->held[0]) : NULL;
        pthread_mutex_unlock(&d->mu);
        if (!s)
            return;
        atomic_fetch_add(&d->meta_late_expired, 1);
        series_release(d, s);
        aptd_series_unref(&s);
    }
}

void aptd_series_end(aptd *d, aptd_series *s, const char *reason)
{
    pthread_mutex_lock(&s->mu);
    int finish = 0;
    if (!s->ended) {
        s->ended = 1;
        snprintf(s->reason, sizeof s->reason, "%s", reason);
        if (s->inflight == 0 && !s->finished)
            finish = s->finished = 1;
    }
    pthread_mutex_unlock(&s->mu);
    if (finish)
        series_finish(d, s);
}

void aptd_series_frame_done(aptd *d, aptd_series *s, uint64_t id, float *pattern, int ok)
{
    pthread_mutex_lock(&s->mu);
    if (ok) {
        s->frames[id] = pattern;
        s->flags[id] |= SF_DECODED;
        s->decoded++;
    } else {
        aptd_pool_put(d->patterns, pattern);
        s->flags[id] |= SF_BAD;
        s->undecodable++;
    }
    s->inflight--;
    int finish = 0;
    if (s->ended && s->inflight == 0 && !s->finished)
        finish = s->finished = 1;
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_add(ok ? &d->frames_decoded : &d->dropped_undecodable, 1);
    if (finish)
        series_finish(d, s);
}

/* Late metadata for a held series: applied; once nothing is missing the series goes on at once. */
static aptd_series *apply_to_held(aptd *d, aptd_series *s, const apt_scanmeta *meta)
{
    pthread_mutex_lock(&s->mu);
    apply_meta(d, s, meta);
    int complete = !series_lacks_meta(s);
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_add(&d->meta_late_applied, 1);
    return complete ? held_take(d, s) : NULL;
}

void aptd_on_meta(aptd *d, apt_scanmeta *meta)
{
    if (!meta->has_series) {
        apt_warn("scan metadata without a series id: ignored");
        atomic_fetch_add(&d->meta_ignored, 1);
        return;
    }
    aptd_series *release = NULL;
    pthread_mutex_lock(&d->mu);
    aptd_series *s = d->current, *h = NULL;
    for (int i = 0; i < d->n_held && !h; i++)
        if (d->held[i]->id == meta->series)
            h = d->held[i];
    if (h) {
        release = apply_to_held(d, h, meta);
    } else if (s && s->id == meta->series) {
        pthread_mutex_lock(&s->mu);
        int fin = s->finished;
        if (!fin)
            apply_meta(d, s, meta);
        pthread_mutex_unlock(&s->mu);
        if (fin) {
            apt_warn("scan metadata for finished series %llu: ignored", (unsigned long long)meta->series);
            atomic_fetch_add(&d->meta_ignored, 1);
        }
    } else if (!s || meta->series > s->id) {
        /* metadata ahead of its series: keep it (bounded) until the series starts */
        if (d->n_pending == APTD_MAX_PENDING_META) {
            apt_warn("too many pending scan-metadata messages: dropping the oldest");
            atomic_fetch_add(&d->meta_ignored, 1);
            apt_scanmeta_clear(&d->pending[0].meta);
            memmove(&d->pending[0], &d->pending[1], (APTD_MAX_PENDING_META - 1) * sizeof d->pending[0]);
            d->n_pending--;
        }
        int slot = d->n_pending++;
        d->pending[slot].series = meta->series;
        d->pending[slot].meta = *meta;
        memset(meta, 0, sizeof *meta); /* ownership moved */
    } else {
        apt_warn("scan metadata for past series %llu: ignored", (unsigned long long)meta->series);
        atomic_fetch_add(&d->meta_ignored, 1);
    }
    pthread_mutex_unlock(&d->mu);
    if (release) {
        apt_info("series %llu: late scan metadata complete, handed on", (unsigned long long)release->id);
        series_release(d, release);
        aptd_series_unref(&release);
    }
}

void aptd_check_timeouts(aptd *d, double now)
{
    for (;;) { /* held series whose grace is over go on without their metadata, oldest first */
        pthread_mutex_lock(&d->mu);
        aptd_series *h = d->n_held && now - d->held_since[0] >= d->s.metadata_grace_s ? held_take(d, d->held[0])
                                                                                        : NULL;
        pthread_mutex_unlock(&d->mu);
        if (!h)
            break;
        apt_warn("series %llu: no complete scan metadata within %.1f s; handed on without it",
                 (unsigned long long)h->id, d->s.metadata_grace_s);
        atomic_fetch_add(&d->meta_late_expired, 1);
        series_release(d, h);
        aptd_series_unref(&h);
    }
    pthread_mutex_lock(&d->mu);
    aptd_series *s = d->current;
    if (s)
        atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&d->mu);
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    int expired = !s->ended && now - s->t_last > d->s.series_timeout_s;
    pthread_mutex_unlock(&s->mu);
    if (expired) {
        apt_warn("series %llu: no message for %.1f s, completing it", (unsigned long long)s->id,
                 d->s.series_timeout_s);
        aptd_series_end(d, s, "timeout");
    }
    aptd_series_unref(&s);
}
