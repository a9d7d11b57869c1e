/* cmd_codec.c - `aptomo codec`: run one pixel codec over a file, raw little-endian elements on one side and a
 * blob on the other. Exists so scripts and the python cross-checks (bitshuffle, python3-lz4, h5py plugins) can drive
 * exactly the library code the daemon uses; every size is bounded before allocation, bad blobs exit 2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/codec.h"
#include "cli.h"

#define CODEC_MAX_FILE ((size_t)1 << 31) /* input and output bound: 2 GiB */

typedef struct codec_args {
    int enc;                         /* encode (1) or decode (0) */
    const char *codec, *in_path, *out_path, *isa, *crop;
    uint64_t elem, count, first, rcount, block, width;
    int has_elem, has_count, has_range;
    uint64_t cx, cy, cw, ch;         /* --crop X0,Y0,W,H */
} codec_args;

/* What a codec run produced: the output bytes, or a library error (malformed input) or a tool failure. */
typedef struct codec_out {
    uint8_t *buf;
    size_t len;
} codec_out;

static const char HELP[] =
    "usage: aptomo codec encode|decode --codec bslz4|h5lz4|lz4|bitshuffle|bitunshuffle --elem-size N\n"
    "                    [--count N] [--first K --range-count N] [--width W --crop X0,Y0,W,H]\n"
    "                    [--block-bytes N] [--isa scalar|sse2|avx2] IN OUT\n"
    "  IN/OUT: raw little-endian elements on the plain side, the encoded blob on the other.\n"
    "  bslz4: bitshuffle+LZ4 in HDF5-filter 32008 framing; decode --first/--range-count or --width/--crop\n"
    "         decodes only that element range / window (only the blocks it needs).\n"
    "  h5lz4: HDF5 LZ4 filter 32004 framing (--block-bytes, default one block).\n"
    "  lz4: one bare LZ4 block; decode needs --count (elements).\n"
    "  bitshuffle: encode = bit transpose, decode = inverse; bitunshuffle: the inverse either way\n"
    "         (--block-bytes: block size, default bitshuffle's 8192-byte one).\n"
    "  --isa caps the bit-transpose kernels (default: the best this CPU has).\n";

/* CLI_OK, CLI_USAGE, or -1 after printing --help. */
static int parse_args(int argc, char **argv, codec_args *a)
{
    enum { O_CODEC = 256, O_ISA, O_CROP, O_ELEM, O_COUNT, O_FIRST, O_RCOUNT, O_BLOCK, O_WIDTH };
    static const struct option opts[] = {
        {"codec", required_argument, NULL, O_CODEC},       {"isa", required_argument, NULL, O_ISA},
        {"crop", required_argument, NULL, O_CROP},         {"elem-size", required_argument, NULL, O_ELEM},
        {"count", required_argument, NULL, O_COUNT},       {"first", required_argument, NULL, O_FIRST},
        {"range-count", required_argument, NULL, O_RCOUNT}, {"block-bytes", required_argument, NULL, O_BLOCK},
        {"width", required_argument, NULL, O_WIDTH},       {0}};
    static const char *const codecs[] = {"bslz4", "h5lz4", "lz4", "bitshuffle", "bitunshuffle", NULL};
    static const char *const isas[] = {"scalar", "sse2", "avx2", NULL};
    int has_first = 0, has_rcount = 0, c = 0, k, isa = -1;
    cli_parser p;
    cli_init(&p, "codec", HELP, NULL, opts, argc, argv);
    while ((c = cli_next(&p)) > 0) {
        switch (c) {
        case O_CODEC:
            if (!cli_choice(&p, codecs, &k))
                a->codec = codecs[k];
            break;
        case O_ISA:
            if (!cli_choice(&p, isas, &isa))
                a->isa = isas[isa];
            break;
        case O_CROP: a->crop = p.arg; break;
        case O_ELEM: cli_uint(&p, 1, APT_BSHUF_MAX_ELEM, &a->elem), a->has_elem = 1; break;
        case O_COUNT: cli_uint(&p, 0, UINT64_MAX, &a->count), a->has_count = 1; break;
        case O_FIRST: cli_uint(&p, 0, UINT64_MAX, &a->first), has_first = 1; break;
        case O_RCOUNT: cli_uint(&p, 0, UINT64_MAX, &a->rcount), has_rcount = 1; break;
        case O_BLOCK: cli_uint(&p, 0, UINT64_MAX, &a->block); break;
        case O_WIDTH: cli_uint(&p, 0, UINT64_MAX, &a->width); break;
        }
    }
    int cli_rc = cli_done(&p, c, 3, 3, "encode|decode IN OUT");
    if (cli_rc != CLI_GO)
        return cli_rc == CLI_OK ? -1 : cli_rc;
    a->enc = !strcmp(p.args[0], "encode");
    if (!a->enc && strcmp(p.args[0], "decode"))
        return cli_fail(&p, "'%s' is neither encode nor decode", p.args[0]);
    if (!a->codec)
        return cli_fail(&p, "--codec is required (bslz4, h5lz4, lz4, bitshuffle, bitunshuffle)");
    a->in_path = p.args[1], a->out_path = p.args[2];
    int bitwise = !strcmp(a->codec, "bslz4") || !strncmp(a->codec, "bit", 3);
    if (!a->has_elem)
        a->elem = 1; /* bytes are fine for lz4/h5lz4; the bit codecs must be told */
    if (bitwise && !a->has_elem)
        return cli_fail(&p, "--elem-size (1..%u) is required for codec %s", APT_BSHUF_MAX_ELEM, a->codec);
    a->has_range = has_first;
    if (has_first != has_rcount || (has_first && a->crop))
        return cli_fail(&p, "--first and --range-count go together (and not with --crop)");
    if (a->crop) {
        unsigned long long v[4];
        char tail;
        if (sscanf(a->crop, "%llu,%llu,%llu,%llu%c", &v[0], &v[1], &v[2], &v[3], &tail) != 4 || !a->width ||
            v[2] > CODEC_MAX_FILE || v[3] > CODEC_MAX_FILE || v[2] * v[3] > CODEC_MAX_FILE / a->elem)
            return cli_fail(&p, "--crop wants X0,Y0,W,H (at most %zu bytes) and --width the frame width, got '%s'",
                            CODEC_MAX_FILE, a->crop);
        a->cx = v[0], a->cy = v[1], a->cw = v[2], a->ch = v[3];
    }
    if (a->isa) {
        int lvl = isa == 0 ? APT_BSHUF_SCALAR : isa == 1 ? APT_BSHUF_SSE2 : APT_BSHUF_AVX2;
        if (apt_bshuf_set_isa(lvl) != lvl)
            fprintf(stderr, "aptomo codec: %s not available here, using level %d\n", a->isa, apt_bshuf_isa());
    }
    return CLI_OK;
}

/* Output buffer of len bytes (bounded by the caller); NULL only when out of memory. */
static int alloc_out(codec_out *o, size_t len)
{
    o->len = len;
    o->buf = malloc(len ? len : 1);
    return o->buf ? 0 : -1;
}

static int run_bits(const codec_args *a, const uint8_t *in, size_t len, codec_out *o, apt_error *err)
{
    size_t es = (size_t)a->elem;
    if (a->block % es || (a->block / es) % 8)
        return apt_err(err, APT_EINVAL, "--block-bytes %llu is not a multiple of 8 elements",
                       (unsigned long long)a->block);
    if (alloc_out(o, len))
        return APT_ENOMEM;
    if (a->enc && !strcmp(a->codec, "bitshuffle"))
        return apt_bitshuffle(in, o->buf, len / es, es, (size_t)a->block / es, err);
    return apt_bitunshuffle(in, o->buf, len / es, es, (size_t)a->block / es, err);
}

static int run_bslz4(const codec_args *a, const uint8_t *in, size_t len, codec_out *o, apt_error *err)
{
    size_t es = (size_t)a->elem;
    if (a->enc) {
        size_t cap = apt_bslz4_bound(len / es, es);
        if (!cap || alloc_out(o, cap))
            return APT_ENOMEM;
        return apt_bslz4_encode(in, len / es, es, o->buf, cap, &o->len, err);
    }
    uint64_t raw;
    int rc = apt_bslz4_header(in, len, es, &raw, NULL, err);
    if (rc)
        return rc;
    if (a->has_range) {
        if (a->first > raw / es || a->rcount > raw / es - a->first)
            return apt_err(err, APT_ERANGE, "range [%llu, +%llu) outside its %llu elements",
                           (unsigned long long)a->first, (unsigned long long)a->rcount,
                           (unsigned long long)(raw / es));
        if (alloc_out(o, (size_t)a->rcount * es))
            return APT_ENOMEM;
        return apt_bslz4_decode_range(in, len, es, (size_t)a->first, (size_t)a->rcount, o->buf, err);
    }
    if (a->crop) {
        if (alloc_out(o, (size_t)(a->cw * a->ch) * es))
            return APT_ENOMEM;
        return apt_bslz4_decode_crop(in, len, es, (size_t)a->width, (size_t)a->cx, (size_t)a->cy, (size_t)a->cw,
                                     (size_t)a->ch, o->buf, err);
    }
    if (raw > CODEC_MAX_FILE)
        return apt_err(err, APT_ERANGE, "header raw size %llu exceeds this tool's %zu-byte limit",
                       (unsigned long long)raw, CODEC_MAX_FILE);
    if (alloc_out(o, (size_t)raw))
        return APT_ENOMEM;
    return apt_bslz4_decode(in, len, es, o->buf, o->len, err);
}

static int run_h5lz4(const codec_args *a, const uint8_t *in, size_t len, codec_out *o, apt_error *err)
{
    if (a->enc) {
        size_t cap = apt_h5lz4_bound(len, (size_t)a->block);
        if (!cap || alloc_out(o, cap))
            return APT_ENOMEM;
        return apt_h5lz4_encode(in, len, (size_t)a->block, o->buf, cap, &o->len, err);
    }
    uint64_t raw;
    int rc = apt_h5lz4_header(in, len, &raw, NULL, err);
    if (rc)
        return rc;
    if (raw > CODEC_MAX_FILE)
        return apt_err(err, APT_ERANGE, "header raw size %llu exceeds this tool's %zu-byte limit",
                       (unsigned long long)raw, CODEC_MAX_FILE);
    if (alloc_out(o, (size_t)raw))
        return APT_ENOMEM;
    return apt_h5lz4_decode(in, len, o->buf, o->len, &o->len, err);
}

static int run_lz4(const codec_args *a, const uint8_t *in, size_t len, codec_out *o, apt_error *err)
{
    if (a->enc) {
        size_t cap = apt_lz4_bound(len);
        if (!cap || alloc_out(o, cap))
            return APT_ENOMEM;
        return apt_lz4_encode_raw(in, len, o->buf, cap, &o->len, err);
    }
    if (!a->has_count || a->count > CODEC_MAX_FILE / a->elem)
        return apt_err(err, APT_EINVAL, "lz4 decode needs --count N elements (at most %zu bytes)", CODEC_MAX_FILE);
    if (alloc_out(o, (size_t)a->count * (size_t)a->elem))
        return APT_ENOMEM;
    return apt_lz4_decode_raw(in, len, o->buf, o->len, err);
}

int cmd_codec(int argc, char **argv)
{
    codec_args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? CLI_OK : rc;
    int (*run)(const codec_args *, const uint8_t *, size_t, codec_out *, apt_error *) =
        !strcmp(a.codec, "bslz4") ? run_bslz4 : !strcmp(a.codec, "h5lz4") ? run_h5lz4
        : !strcmp(a.codec, "lz4") ? run_lz4 : run_bits;
    if ((rc = cli_check_output("OUT", a.out_path)))
        return rc;
    size_t len = 0;
    uint8_t *in = cli_read_file(a.in_path, CODEC_MAX_FILE, &len);
    if (!in)
        return CLI_USAGE;
    /* plain element files must hold whole elements (bslz4/bit codecs; lz4 and h5lz4 work on bytes) */
    int plain = (a.enc && strcmp(a.codec, "bitunshuffle")) || !strncmp(a.codec, "bit", 3);
    if (plain && len % a.elem) {
        cli_error("%s: %zu bytes are not whole %llu-byte elements", a.in_path, len, (unsigned long long)a.elem);
        free(in);
        return CLI_USAGE;
    }
    apt_error err = {0};
    codec_out out = {0};
    int lib = run(&a, in, len, &out, &err);
    if (lib == APT_ENOMEM) {
        cli_error("out of memory %s", err.msg);
        rc = CLI_FAIL;
    } else if (lib) { /* the input (or its options) is at fault: name the file and the field */
        cli_error("%s: %s", a.in_path, err.msg);
        rc = a.enc && lib != APT_EINVAL ? CLI_FAIL : CLI_USAGE;
    } else {
        rc = cli_write_file(a.out_path, out.buf, out.len) ? CLI_FAIL : CLI_OK;
    }
    free(in);
    free(out.buf);
    return rc;
}
