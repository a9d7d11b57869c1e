/* cbor_read.h - a bounded CBOR reader: one message becomes a flat pre-order array of nodes, strings borrowed from the
 * input. Built on libcbor's streaming decoder instead of cbor_load(), which allocates whatever an array/map header
 * declares before checking that the input holds it. Here every declared count is checked against the bytes left. */
#ifndef APTOMO_CBOR_READ_H
#define APTOMO_CBOR_READ_H

#include <stddef.h>
#include <stdint.h>

#include "aptomo/error.h"

#define APT_CBOR_MAX_DEPTH 16 /* containers (arrays, maps, tags) nested deeper than this are refused */

typedef enum {
    APT_CB_UINT = 1,  /* u = value */
    APT_CB_NEGINT,    /* u = n, value is -1 - n */
    APT_CB_BYTES,     /* ptr, u = length */
    APT_CB_TEXT,      /* ptr, u = length (not NUL-terminated, UTF-8 not checked) */
    APT_CB_ARRAY,     /* u = element count; elements follow */
    APT_CB_MAP,       /* u = pair count; key, value, key, value... follow */
    APT_CB_TAG,       /* u = tag number; the tagged item follows */
    APT_CB_FLOAT,     /* d (half, single and double all widened) */
    APT_CB_BOOL,      /* u = 0/1 */
    APT_CB_NULL,
    APT_CB_UNDEF
} apt_cbor_type;

typedef struct apt_cbor_node {
    const uint8_t *ptr; /* byte/text strings: borrowed from the input */
    uint64_t u;
    double d;
    uint32_t next;      /* index of the node after this one's whole subtree */
    uint8_t type;       /* apt_cbor_type */
    uint8_t depth;      /* enclosing containers */
} apt_cbor_node;

typedef struct apt_cbor_doc {
    apt_cbor_node *node;
    size_t n, cap;
} apt_cbor_doc;

/* Parse exactly one CBOR item spanning all of data[0, len). max_nodes bounds the node array (each node also needs
   at least one input byte). Indefinite-length strings, arrays and maps are refused (APT_ENOTSUP): Eiger stream v2
   never sends them and they would defeat the up-front size checks. Errors name the byte offset. */
int apt_cbor_parse(const void *data, size_t len, size_t max_nodes, apt_cbor_doc *doc, apt_error *err);
void apt_cbor_doc_free(apt_cbor_doc *doc);

/* Value of text key `key` in the map at index map_i, or -1. Non-text keys are skipped. */
long apt_cbor_map_get(const apt_cbor_doc *doc, size_t map_i, const char *key);
/* i-th child of an array/map/tag at index at (for maps: 2*pair for a key, 2*pair+1 for its value), or -1. */
long apt_cbor_child(const apt_cbor_doc *doc, size_t at, size_t i);
/* Does the text node at i equal s? */
int apt_cbor_text_is(const apt_cbor_doc *doc, size_t i, const char *s);
/* A short name for a node's type, for error messages ("map", "tag 40", "text", ...). */
const char *apt_cbor_type_name(const apt_cbor_node *nd);

#endif
