/* pool.c - a mutex-protected stack of buffers; get pops or mallocs, put pushes or frees past the cache bound. */
#include "pool.h"

#include <pthread.h>
#include <stdlib.h>

struct aptd_pool {
    pthread_mutex_t mu;
    size_t bytes_each, max_cached, n, cap;
    void **stack;
};

aptd_pool *aptd_pool_new(size_t bytes_each, size_t max_cached_bytes)
{
    aptd_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    pthread_mutex_init(&p->mu, NULL);
    p->bytes_each = bytes_each ? bytes_each : 1;
    p->max_cached = max_cached_bytes / p->bytes_each;
    return p;
}

void aptd_pool_destroy(aptd_pool **pp)
{
    aptd_pool *p = *pp;
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        free(p->stack[i]);
    free(p->stack);
    pthread_mutex_destroy(&p->mu);
    free(p);
    *pp = NULL;
}

void *aptd_pool_get(aptd_pool *p)
{
    void *buf = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->n)
        buf = p->stack[--p->n];
    pthread_mutex_unlock(&p->mu);
    return buf ? buf : malloc(p->bytes_each);
}

void aptd_pool_put(aptd_pool *p, void *buf)
{
    if (!buf)
        return;
    pthread_mutex_lock(&p->mu);
    if (p->n < p->max_cached) {
        if (p->n == p->cap) {
            size_t nc = p->cap ? p->cap * 2 : 1024;
            void **ns = realloc(p->stack, nc * sizeof *ns);
            if (ns) {
                p->stack = ns;
                p->cap = nc;
            }
        }
        if (p->n < p->cap) {
            p->stack[p->n++] = buf;
            buf = NULL;
        }
    }
    pthread_mutex_unlock(&p->mu);
    free(buf);
}

size_t aptd_pool_cached(aptd_pool *p)
{
    pthread_mutex_lock(&p->mu);
    size_t n = p->n;
    pthread_mutex_unlock(&p->mu);
    return n;
}
