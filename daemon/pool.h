/* pool.h - a free list of equal-sized pattern buffers (crop x crop floats). Tens of thousands of patterns per angle
 * come and go every few seconds; recycling them keeps the decode path free of page faults and malloc contention
 * once the first angle has warmed the pool (plan once, execute many). Thread-safe. */
#ifndef APTD_POOL_H
#define APTD_POOL_H

#include <stddef.h>

typedef struct aptd_pool aptd_pool;

/* Buffers of bytes_each; at most max_cached_bytes are kept for reuse, the rest are freed. */
aptd_pool *aptd_pool_new(size_t bytes_each, size_t max_cached_bytes);
void aptd_pool_destroy(aptd_pool **p);
void *aptd_pool_get(aptd_pool *p);       /* NULL only when out of memory */
void aptd_pool_put(aptd_pool *p, void *buf); /* NULL is fine */
size_t aptd_pool_cached(aptd_pool *p);

#endif
