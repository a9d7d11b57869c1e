/* cbor_read.c - bounded CBOR parsing on libcbor's streaming decoder (cbor_stream_decode + callbacks). Each callback
 * appends one node; a small stack of open containers counts down their children. Declared sizes are checked against
 * the bytes that remain before anything is reserved, so a 20-byte message declaring 2^40 elements fails at once. */
#include "cbor_read.h"

#include <cbor.h>
#include <stdlib.h>
#include <string.h>

typedef struct reader {
    apt_cbor_doc *doc;
    size_t max_nodes;
    size_t pos, len;          /* offset of the item being decoded, total input */
    size_t open[APT_CBOR_MAX_DEPTH + 1]; /* node index of each open container */
    uint64_t left[APT_CBOR_MAX_DEPTH + 1]; /* children still expected */
    int depth;
    int rc;
    apt_error *err;
} reader;

static apt_cbor_node *push(reader *r, uint8_t type)
{
    if (r->rc)
        return NULL;
    apt_cbor_doc *d = r->doc;
    if (d->n >= r->max_nodes) {
        r->rc = apt_err(r->err, APT_ERANGE, "CBOR: more than %zu items (byte %zu)", r->max_nodes, r->pos);
        return NULL;
    }
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 64;
        if (nc > r->max_nodes)
            nc = r->max_nodes;
        apt_cbor_node *p = realloc(d->node, nc * sizeof *p);
        if (!p) {
            r->rc = apt_err(r->err, APT_ENOMEM, "CBOR: out of memory for %zu items", nc);
            return NULL;
        }
        d->node = p;
        d->cap = nc;
    }
    apt_cbor_node *nd = &d->node[d->n];
    memset(nd, 0, sizeof *nd);
    nd->type = type;
    nd->depth = (uint8_t)r->depth;
    nd->next = (uint32_t)(d->n + 1);
    d->n++;
    return nd;
}

/* One item finished: count it against the innermost open container, closing every container that is now full. */
static void item_done(reader *r)
{
    while (r->depth > 0) {
        if (--r->left[r->depth - 1] > 0)
            return;
        r->depth--;
        r->doc->node[r->open[r->depth]].next = (uint32_t)r->doc->n;
    }
}

/* A container with `children` items to follow; zero-size ones close at once. */
static void open_container(reader *r, uint8_t type, uint64_t count, uint64_t children)
{
    if (r->rc)
        return;
    /* each child needs at least one byte of the input that is left after this header byte */
    if (children > r->len - r->pos - 1) {
        if (type == APT_CB_TAG)
            r->rc = apt_err(r->err, APT_EPROTO, "CBOR: truncated: tag %llu at byte %zu has no content",
                            (unsigned long long)count, r->pos);
        else
            r->rc = apt_err(r->err, APT_EPROTO, "CBOR: %s of %llu %s at byte %zu exceeds the %zu bytes left",
                            type == APT_CB_MAP ? "map" : "array", (unsigned long long)count,
                            type == APT_CB_MAP ? "pairs" : "items", r->pos, r->len - r->pos - 1);
        return;
    }
    if (r->depth >= APT_CBOR_MAX_DEPTH) {
        r->rc = apt_err(r->err, APT_ERANGE, "CBOR: nesting deeper than %d at byte %zu", APT_CBOR_MAX_DEPTH, r->pos);
        return;
    }
    apt_cbor_node *nd = push(r, type);
    if (!nd)
        return;
    nd->u = count;
    if (children == 0) {
        item_done(r);
        return;
    }
    r->open[r->depth] = r->doc->n - 1;
    r->left[r->depth] = children;
    r->depth++;
}

static reader *R(void *ctx) { return ctx; }

static void leaf_u(void *ctx, uint8_t type, uint64_t v)
{
    apt_cbor_node *nd = push(R(ctx), type);
    if (nd) {
        nd->u = v;
        item_done(R(ctx));
    }
}

static void cb_u8(void *c, uint8_t v) { leaf_u(c, APT_CB_UINT, v); }
static void cb_u16(void *c, uint16_t v) { leaf_u(c, APT_CB_UINT, v); }
static void cb_u32(void *c, uint32_t v) { leaf_u(c, APT_CB_UINT, v); }
static void cb_u64(void *c, uint64_t v) { leaf_u(c, APT_CB_UINT, v); }
static void cb_n8(void *c, uint8_t v) { leaf_u(c, APT_CB_NEGINT, v); }
static void cb_n16(void *c, uint16_t v) { leaf_u(c, APT_CB_NEGINT, v); }
static void cb_n32(void *c, uint32_t v) { leaf_u(c, APT_CB_NEGINT, v); }
static void cb_n64(void *c, uint64_t v) { leaf_u(c, APT_CB_NEGINT, v); }

static void string_node(void *ctx, uint8_t type, cbor_data p, size_t n)
{
    apt_cbor_node *nd = push(R(ctx), type);
    if (nd) {
        nd->ptr = p;
        nd->u = n;
        item_done(R(ctx));
    }
}

static void cb_bytes(void *c, cbor_data p, size_t n) { string_node(c, APT_CB_BYTES, p, n); }
static void cb_text(void *c, cbor_data p, size_t n) { string_node(c, APT_CB_TEXT, p, n); }

static void cb_indef(void *ctx)
{
    reader *r = R(ctx);
    if (!r->rc)
        r->rc = apt_err(r->err, APT_ENOTSUP, "CBOR: indefinite-length item at byte %zu is not supported", r->pos);
}

static void cb_array(void *c, size_t n) { open_container(R(c), APT_CB_ARRAY, n, n); }

static void cb_map(void *c, size_t n)
{
    reader *r = R(c);
    if (n > SIZE_MAX / 2 || (uint64_t)n > UINT64_MAX / 2) {
        r->rc = apt_err(r->err, APT_EPROTO, "CBOR: map size at byte %zu overflows", r->pos);
        return;
    }
    open_container(r, APT_CB_MAP, n, 2 * (uint64_t)n);
}

static void cb_tag(void *c, uint64_t tag) { open_container(R(c), APT_CB_TAG, tag, 1); }

static void float_node(void *ctx, double v)
{
    apt_cbor_node *nd = push(R(ctx), APT_CB_FLOAT);
    if (nd) {
        nd->d = v;
        item_done(R(ctx));
    }
}

static void cb_f2(void *c, float v) { float_node(c, v); }
static void cb_f4(void *c, float v) { float_node(c, v); }
static void cb_f8(void *c, double v) { float_node(c, v); }
static void cb_undef(void *c) { leaf_u(c, APT_CB_UNDEF, 0); }
static void cb_null(void *c) { leaf_u(c, APT_CB_NULL, 0); }
static void cb_bool(void *c, bool v) { leaf_u(c, APT_CB_BOOL, v ? 1 : 0); }

static void cb_break(void *ctx)
{
    reader *r = R(ctx);
    if (!r->rc)
        r->rc = apt_err(r->err, APT_EPROTO, "CBOR: stray break byte at byte %zu", r->pos);
}

static const struct cbor_callbacks callbacks = {
    .uint8 = cb_u8, .uint16 = cb_u16, .uint32 = cb_u32, .uint64 = cb_u64,
    .negint8 = cb_n8, .negint16 = cb_n16, .negint32 = cb_n32, .negint64 = cb_n64,
    .byte_string_start = cb_indef, .byte_string = cb_bytes,
    .string = cb_text, .string_start = cb_indef,
    .indef_array_start = cb_indef, .array_start = cb_array,
    .indef_map_start = cb_indef, .map_start = cb_map,
    .tag = cb_tag,
    .float2 = cb_f2, .float4 = cb_f4, .float8 = cb_f8,
    .undefined = cb_undef, .null = cb_null, .boolean = cb_bool,
    .indef_break = cb_break,
};

int apt_cbor_parse(const void *data, size_t len, size_t max_nodes, apt_cbor_doc *doc, apt_error *err)
{
    doc->n = 0;
    if (!data || len == 0)
        return apt_err(err, APT_EPROTO, "CBOR: empty message");
    if (max_nodes > UINT32_MAX - 1)
        max_nodes = UINT32_MAX - 1;
    reader r = {.doc = doc, .max_nodes = max_nodes, .len = len, .err = err};
    const uint8_t *p = data;
    do {
        struct cbor_decoder_result res = cbor_stream_decode(p + r.pos, len - r.pos, &callbacks, &r);
        if (r.rc)
            return r.rc;
        if (res.status == CBOR_DECODER_NEDATA)
            return apt_err(err, APT_EPROTO, "CBOR: truncated at byte %zu (%zu more bytes needed)", r.pos,
                           res.required);
        if (res.status != CBOR_DECODER_FINISHED || res.read == 0)
            return apt_err(err, APT_EPROTO, "CBOR: malformed item at byte %zu (0x%02x)", r.pos, p[r.pos]);
        r.pos += res.read;
    } while (r.depth > 0 && r.pos < len);
    if (r.depth > 0)
        return apt_err(err, APT_EPROTO, "CBOR: truncated: %llu item(s) missing at the end of %zu bytes",
                       (unsigned long long)r.left[r.depth - 1], len);
    if (r.pos != len)
        return apt_err(err, APT_EPROTO, "CBOR: %zu trailing bytes after the item ending at byte %zu", len - r.pos,
                       r.pos);
    return APT_OK;
}

void apt_cbor_doc_free(apt_cbor_doc *doc)
{
    free(doc->node);
    doc->node = NULL;
    doc->n = doc->cap = 0;
}

long apt_cbor_child(const apt_cbor_doc *doc, size_t at, size_t i)
{
    if (at >= doc->n)
        return -1;
    const apt_cbor_node *nd = &doc->node[at];
    uint64_t count = nd->type == APT_CB_MAP ? 2 * nd->u : nd->type == APT_CB_ARRAY ? nd->u
                                                        : nd->type == APT_CB_TAG   ? 1
                                                                                   : 0;
    if (i >= count)
        return -1;
    size_t k = at + 1;
    for (size_t j = 0; j < i; j++)
        k = doc->node[k].next;
    return (long)k;
}

int apt_cbor_text_is(const apt_cbor_doc *doc, size_t i, const char *s)
{
    if (i >= doc->n || doc->node[i].type != APT_CB_TEXT)
        return 0;
    size_t n = strlen(s);
    return doc->node[i].u == n && memcmp(doc->node[i].ptr, s, n) == 0;
}

long apt_cbor_map_get(const apt_cbor_doc *doc, size_t map_i, const char *key)
{
    if (map_i >= doc->n || doc->node[map_i].type != APT_CB_MAP)
        return -1;
    size_t k = map_i + 1;
    for (uint64_t j = 0; j < doc->node[map_i].u; j++) {
        size_t v = doc->node[k].next;
        if (apt_cbor_text_is(doc, k, key))
            return (long)v;
        k = doc->node[v].next;
    }
    return -1;
}

const char *apt_cbor_type_name(const apt_cbor_node *nd)
{
    switch (nd->type) {
    case APT_CB_UINT: return "unsigned integer";
    case APT_CB_NEGINT: return "negative integer";
    case APT_CB_BYTES: return "byte string";
    case APT_CB_TEXT: return "text string";
    case APT_CB_ARRAY: return "array";
    case APT_CB_MAP: return "map";
    case APT_CB_TAG: return "tag";
    case APT_CB_FLOAT: return "float";
    case APT_CB_BOOL: return "bool";
    case APT_CB_NULL: return "null";
    case APT_CB_UNDEF: return "undefined";
    default: return "unknown";
    }
}
