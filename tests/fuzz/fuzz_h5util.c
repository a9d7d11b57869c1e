/* fuzz_h5util.c - fuzz bytes -> a well-formed HDF5 file (see fuzz_h5util.h for why not raw bytes). */
#include "fuzz_h5util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aptomo/h5filter.h"

int (*fz_unwritten_ok)(int rank, const hsize_t *dims);

uint8_t fz_u8(fz_in *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

double fz_value(fz_in *in)
{
    static const double pick[16] = {1.0,     0.0,   -1.0,    NAN,  INFINITY, -INFINITY, 1e300, 1e-300,
                                    -0.0,    0.5,   65536.0, 4294967296.0, 1e-10, 2.5, 180.0, -1e300};
    uint8_t b = fz_u8(in);
    if (b < 16)
        return pick[b];
    if (b == 255) {
        double d = 0;
        uint8_t raw[8];
        for (int i = 0; i < 8; i++)
            raw[i] = fz_u8(in);
        memcpy(&d, raw, sizeof d);
        return d;
    }
    return (b - 16) / 4.0;
}

const char *fz_scratch_path(const char *stem)
{
    static char path[256];
    if (!path[0]) { /* one file per process: fuzz-ci and make fuzz may run beside other runs */
        const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
        snprintf(path, sizeof path, "%s/aptomo-%s-%ld.h5", dir && dir[0] ? dir : "/tmp", stem, (long)getpid());
    }
    return path;
}

hid_t fz_create(const char *path)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    /* Keep HDF5's freed blocks for reuse: the metadata cache of every open file is over the default per-list limit
       (64 KiB), and a fresh calloc of it per open (page faults under ASan) made an execution 10x slower */
    H5set_free_list_limits(64 << 20, 16 << 20, 64 << 20, 16 << 20, 64 << 20, 16 << 20);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_EARLIEST, H5F_LIBVER_LATEST);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    return f;
}

/* ---- types -------------------------------------------------------------------------------------------------- */

enum { T_F64, T_F32, T_F64BE, T_U8, T_U16, T_U32, T_U64, T_I8, T_I16, T_I32, T_C64, T_C128, T_CAB, T_CRIX,
       T_CRINT, T_ARR2, T_STR8, T_VSTR, T_OPAQUE, T_BITS, T_N };

static hid_t compound(const char *const *names, const hid_t *types, int n)
{
    size_t size = 0;
    for (int i = 0; i < n; i++)
        size += H5Tget_size(types[i]);
    hid_t t = H5Tcreate(H5T_COMPOUND, size);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        H5Tinsert(t, names[i], off, types[i]);
        off += H5Tget_size(types[i]);
    }
    return t;
}

static hid_t type_make(int k)
{
    static const char *ri[] = {"r", "i", "x"}, *ab[] = {"a", "b"};
    const hid_t f32[3] = {H5T_IEEE_F32LE, H5T_IEEE_F32LE, H5T_IEEE_F32LE}, f64[2] = {H5T_IEEE_F64LE, H5T_IEEE_F64LE};
    const hid_t mixed[2] = {H5T_STD_I32LE, H5T_IEEE_F32LE};
    const hsize_t two = 2;
    hid_t t;
    switch (k) {
    case T_F64: return H5Tcopy(H5T_IEEE_F64LE);
    case T_F32: return H5Tcopy(H5T_IEEE_F32LE);
    case T_F64BE: return H5Tcopy(H5T_IEEE_F64BE);
    case T_U8: return H5Tcopy(H5T_STD_U8LE);
    case T_U16: return H5Tcopy(H5T_STD_U16LE);
    case T_U32: return H5Tcopy(H5T_STD_U32LE);
    case T_U64: return H5Tcopy(H5T_STD_U64LE);
    case T_I8: return H5Tcopy(H5T_STD_I8LE);
    case T_I16: return H5Tcopy(H5T_STD_I16LE);
    case T_I32: return H5Tcopy(H5T_STD_I32LE);
    case T_C64: return compound(ri, f32, 2);
    case T_C128: return compound(ri, f64, 2);
    case T_CAB: return compound(ab, f32, 2);
    case T_CRIX: return compound(ri, f32, 3);
    case T_CRINT: return compound(ri, mixed, 2);
    case T_ARR2: return H5Tarray_create2(H5T_IEEE_F32LE, 1, &two);
    case T_STR8:
        t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, 8);
        return t;
    case T_VSTR:
        t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, H5T_VARIABLE);
        return t;
    case T_OPAQUE:
        t = H5Tcreate(H5T_OPAQUE, 4);
        H5Tset_tag(t, "fuzz");
        return t;
    default: return H5Tcopy(H5T_STD_B8LE);
    }
}

/* Memory image of n elements of file type ft: numbers as doubles (HDF5 converts), the rest as raw bytes. */
typedef struct fz_mem {
    hid_t type;
    void *buf;
} fz_mem;

static int mem_make(hid_t ft, size_t n, fz_in *val, fz_mem *m)
{
    H5T_class_t c = H5Tget_class(ft);
    m->buf = NULL;
    m->type = -1;
    size_t per = 1;
    if (c == H5T_FLOAT || c == H5T_INTEGER) {
        m->type = H5Tcopy(H5T_NATIVE_DOUBLE);
    } else if (c == H5T_COMPOUND) {
        int nm = H5Tget_nmembers(ft);
        m->type = H5Tcreate(H5T_COMPOUND, (size_t)nm * sizeof(double));
        for (int i = 0; i < nm; i++) {
            char *name = H5Tget_member_name(ft, (unsigned)i);
            H5Tinsert(m->type, name, (size_t)i * sizeof(double), H5T_NATIVE_DOUBLE);
            H5free_memory(name);
        }
        per = (size_t)nm;
    } else if (c == H5T_ARRAY) {
        const hsize_t two = 2;
        m->type = H5Tarray_create2(H5T_NATIVE_DOUBLE, 1, &two);
        per = 2;
    } else if (c == H5T_STRING && H5Tis_variable_str(ft) > 0) {
        static char text[16];
        for (size_t i = 0; i + 1 < sizeof text; i++)
            text[i] = (char)(fz_u8(val) & 0x7f);
        text[sizeof text - 1] = 0;
        const char **s = malloc((n ? n : 1) * sizeof *s);
        for (size_t i = 0; s && i < n; i++)
            s[i] = text;
        m->buf = s;
        m->type = H5Tcopy(ft);
        return s ? 0 : -1;
    } else {
        size_t sz = H5Tget_size(ft), len = n * sz;
        uint8_t *b = malloc(len ? len : 1);
        for (size_t i = 0; b && i < len; i++)
            b[i] = fz_u8(val);
        m->buf = b;
        m->type = H5Tcopy(ft);
        return b ? 0 : -1;
    }
    double *d = malloc((n * per ? n * per : 1) * sizeof *d);
    for (size_t i = 0; d && i < n * per; i++)
        d[i] = c == H5T_INTEGER ? (double)fz_u8(val) : fz_value(val);
    m->buf = d;
    return d ? 0 : -1;
}

static void mem_free(fz_mem *m)
{
    if (m->type >= 0)
        H5Tclose(m->type);
    free(m->buf);
}

/* ---- shapes ------------------------------------------------------------------------------------------------- */

static hsize_t elements(int rank, const hsize_t *dims)
{
    hsize_t n = 1;
    for (int i = 0; i < rank; i++)
        n = dims[i] && n > ((hsize_t)1 << 62) / dims[i] ? (hsize_t)1 << 62 : n * dims[i];
    return n;
}

/* Extents from 5 bytes: rank 0..4, each from a small table; large ones only for datasets never written. */
static int shape_fuzz(fz_in *st, int unwritten, hsize_t *dims)
{
    static const hsize_t small[8] = {1, 2, 3, 4, 0, 5, 8, 16};
    static const hsize_t large[8] = {255, 65536, 65537, 100001, (hsize_t)1 << 24, ((hsize_t)1 << 24) + 1,
                                     (hsize_t)1 << 32, (hsize_t)1 << 21};
    int rank = fz_u8(st) % 5;
    for (int i = 0; i < 4; i++) {
        uint8_t b = fz_u8(st);
        if (i < rank)
            dims[i] = unwritten && (b & 8) ? large[b % 8] : small[b % 8];
    }
    return rank;
}

/* Keep what is written small and what is never written acceptable to the harness: shrink extents to 1. */
static void shape_bound(int rank, hsize_t *dims, int written)
{
    for (int i = rank - 1; i >= 0; i--) {
        int ok = written ? elements(rank, dims) <= FZ_MAX_WRITTEN : !fz_unwritten_ok || fz_unwritten_ok(rank, dims);
        if (ok)
            return;
        dims[i] = dims[i] ? 1 : 0;
    }
}

/* ---- datasets ----------------------------------------------------------------------------------------------- */

static hid_t lcpl(void)
{
    hid_t l = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(l, 1);
    return l;
}

/* Chunk byte: 0 one "frame" per chunk [1, d1, d2...], 1 the whole extent, else up to 1..4 per dimension. */
static void chunk_dims(int rank, const hsize_t *dims, uint8_t b, hsize_t *ch)
{
    for (int i = 0; i < rank; i++) {
        hsize_t want = b == 0 ? (i == 0 ? 1 : dims[i]) : b == 1 ? dims[i] : (hsize_t)(b % 4 + 1);
        ch[i] = want < dims[i] ? want : dims[i];
        if (ch[i] == 0)
            ch[i] = 1;
    }
}

static void raw_chunks(hid_t ds, int rank, const hsize_t *dims, const hsize_t *ch, uint8_t mask, fz_in *val)
{
    for (int i = 0; i < rank; i++)
        if (!dims[i])
            return;
    hsize_t off[4] = {0, 0, 0, 0};
    /* a chunk stored without its filters (none in the pipeline, or the mask skips the only one) is read back as
       raw bytes of exactly the chunk's size; libhdf5 1.10 overflows its read buffer otherwise */
    hid_t dcpl = H5Dget_create_plist(ds), t = H5Dget_type(ds);
    int nf = dcpl >= 0 ? H5Pget_nfilters(dcpl) : 0;
    size_t exact = 0;
    if (nf == 0 || (nf == 1 && (mask & 1))) {
        exact = t >= 0 ? H5Tget_size(t) : 0;
        for (int i = 0; i < rank; i++)
            exact *= ch[i];
    }
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (t >= 0)
        H5Tclose(t);
    uint8_t *buf = malloc(2048);
    for (int k = 0; buf && k < 16; k++) {
        size_t len = (fz_u8(val) | (size_t)fz_u8(val) << 8) % 2049;
        for (size_t i = 0; i < len; i++)
            buf[i] = fz_u8(val);
        if (len && exact && exact <= 2048)
            len = exact;
        if (len && (!exact || len == exact)) /* libhdf5 trusts an unfiltered chunk's size: it must be exact */
            H5Dwrite_chunk(ds, H5P_DEFAULT, mask & 1, off, len, buf);
        int i = rank - 1; /* next chunk offset, row-major */
        for (; i >= 0; i--) {
            off[i] += ch[i];
            if (off[i] < dims[i])
                break;
            off[i] = 0;
        }
        if (i < 0)
            break;
    }
    free(buf);
}

void fz_dataset(hid_t file, const char *path, const fz_canon *canon, fz_in *st, fz_in *val)
{
    uint8_t mode = fz_u8(st) % 8, tb = fz_u8(st);
    fz_in shape_st = {st->p, st->n < 5 ? st->n : 5};
    st->p += shape_st.n;
    st->n -= shape_st.n;
    uint8_t lb = fz_u8(st), cb = fz_u8(st);
    hid_t l = lcpl();
    if (mode == 1) { /* absent */
        H5Pclose(l);
        return;
    }
    if (mode == 5 || mode == 6) { /* a group, or a dangling soft link, where a dataset belongs */
        if (mode == 5)
            H5Gclose(H5Gcreate2(file, path, l, H5P_DEFAULT, H5P_DEFAULT));
        else
            H5Lcreate_soft("/nowhere/at/all", file, path, l, H5P_DEFAULT);
        H5Pclose(l);
        return;
    }
    int layout = mode == 7 ? lb % FZ_N_LAYOUT : canon->layout;
    int unwritten = layout == FZ_UNWRITTEN;
    hid_t ft = mode == 2 || mode == 4 ? type_make(tb % T_N) : H5Tcopy(canon->type);
    hsize_t dims[4] = {0}, ch[4], maxd[4];
    int rank = canon->rank;
    memcpy(dims, canon->dims, sizeof dims);
    if (mode == 3 || mode == 4 || (mode == 7 && (lb & 0x80)))
        rank = shape_fuzz(&shape_st, unwritten, dims);
    shape_bound(rank, dims, !unwritten);
    int chunked = layout != FZ_CONTIGUOUS && layout != FZ_COMPACT;
    if (chunked && rank == 0)
        layout = FZ_CONTIGUOUS, chunked = 0, unwritten = 0;
    /* no extendable dataset for raw chunks: libhdf5 1.10's H5Dwrite_chunk crashes on some (in its chunk B-tree) */
    int raw = layout == FZ_RAW_CHUNKS;
    for (int i = 0; i < rank; i++)
        maxd[i] = chunked && !raw && (dims[i] == 0 || (cb & 0x80)) ? H5S_UNLIMITED : dims[i];
    hid_t sp = rank ? H5Screate_simple(rank, dims, maxd) : H5Screate(H5S_SCALAR);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (layout == FZ_COMPACT)
        H5Pset_layout(dcpl, H5D_COMPACT);
    if (chunked) {
        chunk_dims(rank, dims, cb & 0x7f, ch);
        H5Pset_chunk(dcpl, rank, ch);
    }
    if (layout == FZ_BSLZ4 || layout == FZ_RAW_CHUNKS)
        apt_h5filter_set_bslz4(dcpl, NULL);
    if (layout == FZ_DEFLATE)
        H5Pset_deflate(dcpl, 1);
    hid_t ds = H5Dcreate2(file, path, ft, sp, l, dcpl, H5P_DEFAULT);
    if (ds >= 0 && raw) {
        raw_chunks(ds, rank, dims, ch, cb, val);
    } else if (ds >= 0 && !unwritten) {
        fz_mem m;
        if (mem_make(ft, (size_t)elements(rank, dims), val, &m) == 0)
            H5Dwrite(ds, m.type, H5S_ALL, H5S_ALL, H5P_DEFAULT, m.buf);
        mem_free(&m);
    }
    if (ds >= 0)
        H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(sp);
    H5Tclose(ft);
    H5Pclose(l);
    H5Eclear2(H5E_DEFAULT);
}

void fz_attribute(hid_t file, const char *obj_path, const char *name, const fz_canon *canon, fz_in *st, fz_in *val)
{
    uint8_t mode = fz_u8(st) % 5, tb = fz_u8(st);
    fz_in shape_st = {st->p, st->n < 5 ? st->n : 5};
    st->p += shape_st.n;
    st->n -= shape_st.n;
    if (mode == 1)
        return;
    hid_t obj = H5Oopen(file, obj_path, H5P_DEFAULT);
    if (obj < 0) {
        H5Eclear2(H5E_DEFAULT);
        return;
    }
    hid_t ft = mode == 2 || mode == 4 ? type_make(tb % T_N) : H5Tcopy(canon->type);
    hsize_t dims[4] = {0};
    int rank = canon->rank;
    memcpy(dims, canon->dims, sizeof dims);
    if (mode == 3 || mode == 4)
        rank = shape_fuzz(&shape_st, 0, dims);
    shape_bound(rank, dims, 1);
    hid_t sp = rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, ft, sp, H5P_DEFAULT, H5P_DEFAULT);
    fz_mem m;
    if (a >= 0 && mem_make(ft, (size_t)elements(rank, dims), val, &m) == 0)
        H5Awrite(a, m.type, m.buf);
    if (a >= 0) {
        mem_free(&m);
        H5Aclose(a);
    }
    H5Sclose(sp);
    H5Tclose(ft);
    H5Oclose(obj);
    H5Eclear2(H5E_DEFAULT);
}
