/* queue.c - a ring of pointers under one mutex and three condition variables. Items popped are counted as "busy"
 * until the consumer calls aptd_queue_done, so the daemon can wait for a stage to be truly idle when draining. */
#include "queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct aptd_queue {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full, idle;
    void **ring;
    size_t cap, head, len, busy;
    int closed;
};

aptd_queue *aptd_queue_new(size_t capacity)
{
    if (capacity == 0)
        capacity = 1;
    aptd_queue *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->ring = calloc(capacity, sizeof *q->ring);
    if (!q->ring) {
        free(q);
        return NULL;
    }
    q->cap = capacity;
    pthread_mutex_init(&q->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->not_empty, &ca);
    pthread_cond_init(&q->not_full, &ca);
    pthread_cond_init(&q->idle, &ca);
    pthread_condattr_destroy(&ca);
    return q;
}

void aptd_queue_destroy(aptd_queue **qp)
{
    aptd_queue *q = *qp;
    if (!q)
        return;
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    pthread_cond_destroy(&q->idle);
    free(q->ring);
    free(q);
    *qp = NULL;
}

static void put_locked(aptd_queue *q, void *item)
{
    q->ring[(q->head + q->len) % q->cap] = item;
    q->len++;
    pthread_cond_signal(&q->not_empty);
}

int aptd_queue_push(aptd_queue *q, void *item)
{
    pthread_mutex_lock(&q->mu);
    while (q->len == q->cap && !q->closed)
        pthread_cond_wait(&q->not_full, &q->mu);
    int rc = -1;
    if (!q->closed) {
        put_locked(q, item);
        rc = 0;
    }
    pthread_mutex_unlock(&q->mu);
    return rc;
}

int aptd_queue_try_push(aptd_queue *q, void *item)
{
    pthread_mutex_lock(&q->mu);
    int rc = -1;
    if (!q->closed && q->len < q->cap) {
        put_locked(q, item);
        rc = 0;
    }
    pthread_mutex_unlock(&q->mu);
    return rc;
}

void *aptd_queue_pop(aptd_queue *q, int timeout_ms)
{
    struct timespec until;
    if (timeout_ms >= 0) {
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&q->mu);
    while (q->len == 0 && !q->closed) {
        if (timeout_ms < 0)
            pthread_cond_wait(&q->not_empty, &q->mu);
        else if (pthread_cond_timedwait(&q->not_empty, &q->mu, &until) == ETIMEDOUT)
            break;
    }
    void *item = NULL;
    if (q->len) {
        item = q->ring[q->head];
        q->head = (q->head + 1) % q->cap;
        q->len--;
        q->busy++;
        pthread_cond_signal(&q->not_full);
    }
    pthread_mutex_unlock(&q->mu);
    return item;
}

void aptd_queue_done(aptd_queue *q)
{
    pthread_mutex_lock(&q->mu);
    if (q->busy)
        q->busy--;
    if (q->len == 0 && q->busy == 0)
        pthread_cond_broadcast(&q->idle);
    pthread_mutex_unlock(&q->mu);
}

void aptd_queue_wait_idle(aptd_queue *q)
{
    pthread_mutex_lock(&q->mu);
    while (q->len || q->busy)
        pthread_cond_wait(&q->idle, &q->mu);
    pthread_mutex_unlock(&q->mu);
}

void aptd_queue_close(aptd_queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->closed = 1;
    pthread_cond_broadcast(&q->not_empty);
    pthread_cond_broadcast(&q->not_full);
    pthread_mutex_unlock(&q->mu);
}

size_t aptd_queue_depth(aptd_queue *q)
{
    pthread_mutex_lock(&q->mu);
    size_t n = q->len + q->busy;
    pthread_mutex_unlock(&q->mu);
    return n;
}
