/* queue.h - bounded blocking FIFO of pointers between daemon threads (receive -> decode -> spool -> recon ->
 * publish). Bounded so that a slow stage pushes back on the one before it instead of eating memory. */
#ifndef APTD_QUEUE_H
#define APTD_QUEUE_H

#include <stddef.h>

typedef struct aptd_queue aptd_queue;

aptd_queue *aptd_queue_new(size_t capacity);
void aptd_queue_destroy(aptd_queue **q);
/* Blocks while full; returns -1 once the queue is closed (item not taken). */
int aptd_queue_push(aptd_queue *q, void *item);
/* Never blocks: returns -1 when full or closed. */
int aptd_queue_try_push(aptd_queue *q, void *item);
/* Blocks up to timeout_ms (<0: forever) for an item; NULL on timeout or when closed and empty. */
void *aptd_queue_pop(aptd_queue *q, int timeout_ms);
/* Wakes every waiter; pushes fail from now on, pops drain what is left then return NULL. */
void aptd_queue_close(aptd_queue *q);
size_t aptd_queue_depth(aptd_queue *q);
/* Blocks until the queue is empty and no item popped is still being worked on (aptd_queue_done per pop). */
void aptd_queue_done(aptd_queue *q);
void aptd_queue_wait_idle(aptd_queue *q);

#endif
