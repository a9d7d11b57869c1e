/* safetensors.c - safetensors reader/writer. The reader mmaps the file and trusts nothing: the header length is
 * bounded by the file size before the JSON is parsed, every tensor's offsets must lie inside the data section and
 * match dtype x shape exactly (overflow-checked), so a consumer can index the data without further checks. */
#include "aptomo/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct apt_st_file {
    const uint8_t *base;
    size_t len;
    int mapped;
    json_t *header;
    apt_st_tensor *t;
    size_t n;
};

static size_t dtype_size(apt_st_dtype d) { return d == APT_ST_I64 ? 8 : 4; }

static int parse_tensor(const char *name, json_t *v, const uint8_t *data, uint64_t dlen, apt_st_tensor *t,
                        apt_error *err)
{
    if (!json_is_object(v))
        return apt_err(err, APT_EINVAL, "tensor %s: header entry is not an object", name);
    json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape");
    json_t *of = json_object_get(v, "data_offsets");
    if (!json_is_string(dt))
        return apt_err(err, APT_EINVAL, "tensor %s: dtype missing or not a string", name);
    if (!strcmp(json_string_value(dt), "F32"))
        t->dtype = APT_ST_F32;
    else if (!strcmp(json_string_value(dt), "I64"))
        t->dtype = APT_ST_I64;
    else
        return apt_err(err, APT_ENOTSUP, "tensor %s: dtype %s not supported (F32, I64 only)", name,
                       json_string_value(dt));
    if (!json_is_array(sh) || json_array_size(sh) > APT_ST_MAX_RANK)
        return apt_err(err, APT_EINVAL, "tensor %s: shape missing, not an array or rank > %d", name,
                       APT_ST_MAX_RANK);
    t->rank = (int)json_array_size(sh);
    uint64_t count = 1;
    for (int i = 0; i < t->rank; i++) {
        json_t *d = json_array_get(sh, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0 || json_integer_value(d) > ((json_int_t)1 << 40))
            return apt_err(err, APT_EINVAL, "tensor %s: shape[%d] is not an integer in [0, 2^40]", name, i);
        t->shape[i] = (int64_t)json_integer_value(d);
        if (t->shape[i] && count > (UINT64_MAX / 16) / (uint64_t)t->shape[i])
            return apt_err(err, APT_ERANGE, "tensor %s: shape overflows", name);
        count *= (uint64_t)t->shape[i];
    }
    if (!json_is_array(of) || json_array_size(of) != 2 || !json_is_integer(json_array_get(of, 0)) ||
        !json_is_integer(json_array_get(of, 1)))
        return apt_err(err, APT_EINVAL, "tensor %s: data_offsets must be [begin, end]", name);
    json_int_t b = json_integer_value(json_array_get(of, 0)), e = json_integer_value(json_array_get(of, 1));
    if (b < 0 || e < b || (uint64_t)e > dlen)
        return apt_err(err, APT_ERANGE, "tensor %s: data_offsets [%lld, %lld] outside the %llu-byte data section",
                       name, (long long)b, (long long)e, (unsigned long long)dlen);
    if ((uint64_t)(e - b) != count * dtype_size(t->dtype))
        return apt_err(err, APT_EINVAL, "tensor %s: data_offsets span %lld bytes, shape x dtype needs %llu", name,
                       (long long)(e - b), (unsigned long long)(count * dtype_size(t->dtype)));
    t->name = name;
    t->count = (size_t)count;
    t->data = data + b;
    t->nbytes = (size_t)(e - b);
    return APT_OK;
}

static int parse(apt_st_file *f, apt_error *err)
{
    if (f->len < 8)
        return apt_err(err, APT_EINVAL, "truncated: %zu bytes, no header length", f->len);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = hl << 8 | f->base[i];
    if (hl > APT_ST_MAX_HEADER || hl > f->len - 8)
        return apt_err(err, APT_ERANGE, "header length %llu exceeds the file (%zu bytes) or the %llu-byte limit",
                       (unsigned long long)hl, f->len, (unsigned long long)APT_ST_MAX_HEADER);
    json_error_t je;
    f->header = json_loadb((const char *)f->base + 8, (size_t)hl, JSON_REJECT_DUPLICATES, &je);
    if (!f->header)
        return apt_err(err, APT_EINVAL, "header JSON: %s (byte %d)", je.text, je.position);
    if (!json_is_object(f->header))
        return apt_err(err, APT_EINVAL, "header JSON is not an object");
    json_t *meta = json_object_get(f->header, "__metadata__");
    if (meta) {
        const char *k;
        json_t *v;
        if (!json_is_object(meta))
            return apt_err(err, APT_EINVAL, "__metadata__ is not an object");
        json_object_foreach(meta, k, v) if (!json_is_string(v)) return apt_err(
            err, APT_EINVAL, "__metadata__[\"%s\"] is not a string", k);
    }
    size_t n = json_object_size(f->header) - (meta ? 1 : 0);
    f->t = calloc(n ? n : 1, sizeof(*f->t));
    if (!f->t)
        return apt_err(err, APT_ENOMEM, "out of memory for %zu tensors", n);
    const uint8_t *data = f->base + 8 + hl;
    uint64_t dlen = f->len - 8 - hl;
    const char *k;
    json_t *v;
    json_object_foreach(f->header, k, v)
    {
        if (!strcmp(k, "__metadata__"))
            continue;
        int rc = parse_tensor(k, v, data, dlen, &f->t[f->n], err);
        if (rc)
            return rc;
        f->n++;
    }
    return APT_OK;
}

int apt_st_open_mem(const void *buf, size_t len, apt_st_file **out, apt_error *err)
{
    *out = NULL;
    apt_st_file *f = calloc(1, sizeof(*f));
    if (!f)
        return apt_err(err, APT_ENOMEM, "out of memory");
    f->base = buf;
    f->len = len;
    int rc = parse(f, err);
    if (rc) {
        apt_st_close(&f);
        return rc;
    }
    *out = f;
    return APT_OK;
}

int apt_st_open(const char *path, apt_st_file **out, apt_error *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return apt_err(err, APT_EINVAL, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return apt_err(err, APT_EINVAL, "%s: not a regular file", path);
    }
    size_t len = (size_t)st.st_size;
    void *p = len ? mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (len && p == MAP_FAILED)
        return apt_err(err, APT_EIO, "%s: mmap failed: %s", path, strerror(errno));
    apt_st_file *f = calloc(1, sizeof(*f));
    if (!f) {
        if (len)
            munmap(p, len);
        return apt_err(err, APT_ENOMEM, "out of memory");
    }
    f->base = p;
    f->len = len;
    f->mapped = len > 0;
    int rc = parse(f, err);
    if (rc) {
        apt_st_close(&f);
        return apt_err_prefix(err, rc, "%s: ", path);
    }
    *out = f;
    return APT_OK;
}

void apt_st_close(apt_st_file **fp)
{
    if (!fp || !*fp)
        return;
    apt_st_file *f = *fp;
    if (f->mapped)
        munmap((void *)f->base, f->len);
    json_decref(f->header);
    free(f->t);
    free(f);
    *fp = NULL;
}

size_t apt_st_count(const apt_st_file *f) { return f->n; }
const apt_st_tensor *apt_st_at(const apt_st_file *f, size_t i) { return i < f->n ? &f->t[i] : NULL; }

const apt_st_tensor *apt_st_find(const apt_st_file *f, const char *name)
{
    for (size_t i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name))
            return &f->t[i];
    return NULL;
}

const char *apt_st_meta(const apt_st_file *f, const char *key)
{
    json_t *m = json_object_get(f->header, "__metadata__");
    return m ? json_string_value(json_object_get(m, key)) : NULL;
}

const uint8_t *apt_st_bytes(const apt_st_file *f, size_t *len)
{
    *len = f->len;
    return f->base;
}

/* ---- writer ---- */

typedef struct wt {
    char *name;
    apt_st_dtype dtype;
    int rank;
    int64_t shape[APT_ST_MAX_RANK];
    const void *data;
    size_t nbytes;
} wt;

struct apt_st_writer {
    json_t *meta;
    wt *t;
    size_t n, cap;
};

int apt_st_writer_new(apt_st_writer **out, apt_error *err)
{
    *out = calloc(1, sizeof(**out));
    if (!*out || !((*out)->meta = json_object())) {
        free(*out);
        *out = NULL;
        return apt_err(err, APT_ENOMEM, "out of memory");
    }
    return APT_OK;
}

int apt_st_writer_meta(apt_st_writer *w, const char *key, const char *value, apt_error *err)
{
    if (json_object_set_new(w->meta, key, json_string(value)))
        return apt_err(err, APT_EINVAL, "__metadata__[\"%s\"]: not valid UTF-8 or out of memory", key);
    return APT_OK;
}

int apt_st_writer_add(apt_st_writer *w, const char *name, apt_st_dtype dtype, int rank, const int64_t *shape,
                      const void *data, apt_error *err)
{
    if (rank < 0 || rank > APT_ST_MAX_RANK || !strcmp(name, "__metadata__"))
        return apt_err(err, APT_EINVAL, "tensor %s: bad rank %d or reserved name", name, rank);
    if (w->n == w->cap) {
        size_t nc = w->cap ? 2 * w->cap : 64;
        wt *nt = realloc(w->t, nc * sizeof(*nt));
        if (!nt)
            return apt_err(err, APT_ENOMEM, "out of memory");
        w->t = nt;
        w->cap = nc;
    }
    wt *t = &w->t[w->n];
    memset(t, 0, sizeof(*t));
    size_t count = 1;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0)
            return apt_err(err, APT_EINVAL, "tensor %s: negative extent", name);
        t->shape[i] = shape[i];
        count *= (size_t)shape[i];
    }
    if (!(t->name = strdup(name)))
        return apt_err(err, APT_ENOMEM, "out of memory");
    t->dtype = dtype;
    t->rank = rank;
    t->data = data;
    t->nbytes = count * dtype_size(dtype);
    w->n++;
    return APT_OK;
}

int apt_st_writer_save(apt_st_writer *w, const char *path, apt_error *err)
{
    json_t *h = json_object();
    int rc = h ? APT_OK : apt_err(err, APT_ENOMEM, "out of memory");
    if (!rc && json_object_size(w->meta))
        json_object_set(h, "__metadata__", w->meta);
    size_t off = 0;
    for (size_t i = 0; !rc && i < w->n; i++) {
        json_t *sh = json_array();
        for (int d = 0; d < w->t[i].rank; d++)
            json_array_append_new(sh, json_integer(w->t[i].shape[d]));
        json_t *e = json_pack("{s:s, s:o, s:[I, I]}", "dtype", w->t[i].dtype == APT_ST_I64 ? "I64" : "F32", "shape",
                              sh, "data_offsets", (json_int_t)off, (json_int_t)(off + w->t[i].nbytes));
        if (!e || json_object_set_new(h, w->t[i].name, e))
            rc = apt_err(err, APT_ENOMEM, "tensor %s: cannot build header entry", w->t[i].name);
        off += w->t[i].nbytes;
    }
    char *js = rc ? NULL : json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(h);
    if (!rc && !js)
        rc = apt_err(err, APT_ENOMEM, "out of memory for the header");
    if (rc)
        return rc;
    size_t hl = strlen(js), pad = (8 - hl % 8) % 8; /* data section 8-byte aligned, as the reference writer does */
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid()) >= (int)sizeof tmp) {
        free(js);
        return apt_err(err, APT_EINVAL, "%s: path too long", path);
    }
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        free(js);
        return apt_err(err, APT_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)(hl + pad) >> (8 * i));
    int ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(js, 1, hl, fp) == hl && fwrite("        ", 1, pad, fp) == pad;
    for (size_t i = 0; ok && i < w->n; i++)
        ok = fwrite(w->t[i].data, 1, w->t[i].nbytes, fp) == w->t[i].nbytes;
    free(js);
    if (fclose(fp) != 0 || !ok) {
        unlink(tmp);
        return apt_err(err, APT_EIO, "%s: write failed", path);
    }
    if (rename(tmp, path) < 0) {
        unlink(tmp);
        return apt_err(err, APT_EIO, "%s: rename failed: %s", path, strerror(errno));
    }
    return APT_OK;
}

void apt_st_writer_destroy(apt_st_writer **wp)
{
    if (!wp || !*wp)
        return;
    for (size_t i = 0; i < (*wp)->n; i++)
        free((*wp)->t[i].name);
    free((*wp)->t);
    json_decref((*wp)->meta);
    free(*wp);
    *wp = NULL;
}
