/* cmd_codec.c - `aptomo codec`: run one pixel codec over a file, raw little-endian elements on one side and a
 * blob on the other. Exists so scripts and the python cross-checks (bitshuffle, python3-lz4, h5py plugins) can drive
 * exactly the library code the daemon uses; every size is bounded before allocation, bad blobs exit 2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/codec.h"
#include "cli.h"

#define CODEC_MAX_FILE ((size_t)1 << 31) /* input and output bound: 2 GiB */

static void usage(FILE *f)
{
    fprintf(f,
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
            "  --isa caps the bit-transpose kernels (default: the best this CPU has).\n");
}

static int parse_u64(const char *opt, const char *v, uint64_t *out)
{
    if (!v || cli_parse_u64(v, out)) {
        fprintf(stderr, "aptomo codec: %s needs a non-negative integer, got '%s'\n", opt, v ? v : "");
        return -1;
    }
    return 0;
}

static int write_out(const char *path, const void *data, size_t len)
{
    return cli_write_file(path, data, len) ? CLI_FAIL : CLI_OK;
}

int cmd_codec(int argc, char **argv)
{
    const char *pos[3] = {0}, *codec = NULL, *isa = NULL, *crop = NULL;
    uint64_t elem = 0, count = 0, first = 0, rcount = 0, block = 0, width = 0;
    int npos = 0, has_elem = 0, has_count = 0, has_first = 0, has_rcount = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return CLI_OK;
        } else if (!strcmp(a, "--codec") && v) {
            codec = v, i++;
        } else if (!strcmp(a, "--isa") && v) {
            isa = v, i++;
        } else if (!strcmp(a, "--crop") && v) {
            crop = v, i++;
        } else if (!strcmp(a, "--elem-size")) {
            bad = parse_u64(a, v, &elem), has_elem = 1, i++;
        } else if (!strcmp(a, "--count")) {
            bad = parse_u64(a, v, &count), has_count = 1, i++;
        } else if (!strcmp(a, "--first")) {
            bad = parse_u64(a, v, &first), has_first = 1, i++;
        } else if (!strcmp(a, "--range-count")) {
            bad = parse_u64(a, v, &rcount), has_rcount = 1, i++;
        } else if (!strcmp(a, "--block-bytes")) {
            bad = parse_u64(a, v, &block), i++;
        } else if (!strcmp(a, "--width")) {
            bad = parse_u64(a, v, &width), i++;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "aptomo codec: unknown option or missing value: %s\n", a);
            bad = 1;
        } else if (npos < 3) {
            pos[npos++] = a;
        } else {
            fprintf(stderr, "aptomo codec: unexpected argument '%s'\n", a);
            bad = 1;
        }
        if (bad) {
            usage(stderr);
            return CLI_USAGE;
        }
    }
    int enc = pos[0] && !strcmp(pos[0], "encode"), dec = pos[0] && !strcmp(pos[0], "decode");
    if (npos != 3 || (!enc && !dec) || !codec) {
        fprintf(stderr, "aptomo codec: need encode|decode, --codec and IN OUT\n");
        usage(stderr);
        return CLI_USAGE;
    }
    if (!has_elem)
        elem = 1; /* bytes are fine for lz4/h5lz4; the bit codecs must be told (below) */
    if ((!has_elem && (!strcmp(codec, "bslz4") || !strncmp(codec, "bit", 3))) || elem == 0 ||
        elem > APT_BSHUF_MAX_ELEM) {
        fprintf(stderr, "aptomo codec: --elem-size must be 1..%u for codec %s\n", APT_BSHUF_MAX_ELEM, codec);
        return CLI_USAGE;
    }
    if (has_first != has_rcount || (has_first && crop)) {
        fprintf(stderr, "aptomo codec: --first and --range-count go together (and not with --crop)\n");
        return CLI_USAGE;
    }
    uint64_t cx = 0, cy = 0, cw = 0, ch = 0;
    if (crop) {
        unsigned long long v[4];
        char tail;
        if (sscanf(crop, "%llu,%llu,%llu,%llu%c", &v[0], &v[1], &v[2], &v[3], &tail) != 4 || !width) {
            fprintf(stderr, "aptomo codec: --crop wants X0,Y0,W,H and --width the frame width, got '%s'\n", crop);
            return CLI_USAGE;
        }
        cx = v[0], cy = v[1], cw = v[2], ch = v[3];
    }
    if (isa) {
        int lvl = !strcmp(isa, "scalar") ? APT_BSHUF_SCALAR : !strcmp(isa, "sse2") ? APT_BSHUF_SSE2
                                                              : !strcmp(isa, "avx2") ? APT_BSHUF_AVX2 : -2;
        if (lvl == -2) {
            fprintf(stderr, "aptomo codec: --isa is scalar, sse2 or avx2, got '%s'\n", isa);
            return CLI_USAGE;
        }
        if (apt_bshuf_set_isa(lvl) != lvl)
            fprintf(stderr, "aptomo codec: %s not available here, using level %d\n", isa, apt_bshuf_isa());
    }

    const char *in_path = pos[1], *out_path = pos[2];
    size_t len = 0, out_len = 0;
    uint8_t *in = cli_read_file(in_path, CODEC_MAX_FILE, &len), *out = NULL;
    if (!in)
        return CLI_USAGE;
    apt_error err = {0};
    int rc = CLI_OK, lib = APT_OK;
    const size_t es = (size_t)elem;
    const int plain_in = enc && strcmp(codec, "bitunshuffle");
    if ((plain_in || !strncmp(codec, "bit", 3)) && len % es) {
        fprintf(stderr, "%s: %zu bytes are not whole %zu-byte elements\n", in_path, len, es);
        rc = CLI_USAGE;
        goto done;
    }

    if (!strcmp(codec, "bitshuffle") || !strcmp(codec, "bitunshuffle")) {
        if (block % es || (block / es) % 8) {
            fprintf(stderr, "aptomo codec: --block-bytes %llu is not a multiple of 8 elements\n",
                    (unsigned long long)block);
            rc = CLI_USAGE;
            goto done;
        }
        out = malloc(len ? len : 1);
        if (!out)
            goto nomem;
        if (enc && !strcmp(codec, "bitshuffle"))
            lib = apt_bitshuffle(in, out, len / es, es, block / es, &err);
        else
            lib = apt_bitunshuffle(in, out, len / es, es, block / es, &err);
        out_len = len;
        if (lib)
            rc = CLI_USAGE;
    } else if (!strcmp(codec, "bslz4") && enc) {
        size_t cap = apt_bslz4_bound(len / es, es);
        if (!cap || !(out = malloc(cap)))
            goto nomem;
        if ((lib = apt_bslz4_encode(in, len / es, es, out, cap, &out_len, &err)))
            rc = CLI_FAIL;
    } else if (!strcmp(codec, "bslz4")) {
        uint64_t raw;
        if ((lib = apt_bslz4_header(in, len, es, &raw, NULL, &err))) {
            rc = CLI_USAGE;
        } else if (has_first) {
            if (first > raw / es || rcount > raw / es - first) {
                fprintf(stderr, "%s: range [%llu, +%llu) outside its %llu elements\n", in_path,
                        (unsigned long long)first, (unsigned long long)rcount, (unsigned long long)(raw / es));
                rc = CLI_USAGE;
                goto done;
            }
            out_len = (size_t)rcount * es;
            if (!(out = malloc(out_len ? out_len : 1)))
                goto nomem;
            if ((lib = apt_bslz4_decode_range(in, len, es, first, rcount, out, &err)))
                rc = CLI_USAGE;
        } else if (crop) {
            if (cw > CODEC_MAX_FILE || ch > CODEC_MAX_FILE || cw * ch > CODEC_MAX_FILE / es) {
                fprintf(stderr, "aptomo codec: crop %llux%llu too large\n", (unsigned long long)cw,
                        (unsigned long long)ch);
                rc = CLI_USAGE;
                goto done;
            }
            out_len = (size_t)(cw * ch) * es;
            if (!(out = malloc(out_len ? out_len : 1)))
                goto nomem;
            if ((lib = apt_bslz4_decode_crop(in, len, es, width, cx, cy, cw, ch, out, &err)))
                rc = CLI_USAGE;
        } else {
            if (raw > CODEC_MAX_FILE) {
                fprintf(stderr, "%s: header raw size %llu exceeds this tool's %zu-byte limit\n", in_path,
                        (unsigned long long)raw, CODEC_MAX_FILE);
                rc = CLI_USAGE;
                goto done;
            }
            out_len = (size_t)raw;
            if (!(out = malloc(out_len ? out_len : 1)))
                goto nomem;
            if ((lib = apt_bslz4_decode(in, len, es, out, out_len, &err)))
                rc = CLI_USAGE;
        }
    } else if (!strcmp(codec, "h5lz4") && enc) {
        size_t cap = apt_h5lz4_bound(len, block);
        if (!cap || !(out = malloc(cap)))
            goto nomem;
        if ((lib = apt_h5lz4_encode(in, len, block, out, cap, &out_len, &err)))
            rc = CLI_FAIL;
    } else if (!strcmp(codec, "h5lz4")) {
        uint64_t raw;
        if ((lib = apt_h5lz4_header(in, len, &raw, NULL, &err))) {
            rc = CLI_USAGE;
        } else if (raw > CODEC_MAX_FILE) {
            fprintf(stderr, "%s: header raw size %llu exceeds this tool's %zu-byte limit\n", in_path,
                    (unsigned long long)raw, CODEC_MAX_FILE);
            rc = CLI_USAGE;
        } else if (!(out = malloc(raw ? (size_t)raw : 1))) {
            goto nomem;
        } else if ((lib = apt_h5lz4_decode(in, len, out, (size_t)raw, &out_len, &err))) {
            rc = CLI_USAGE;
        }
    } else if (!strcmp(codec, "lz4") && enc) {
        size_t cap = apt_lz4_bound(len);
        if (!cap || !(out = malloc(cap)))
            goto nomem;
        if ((lib = apt_lz4_encode_raw(in, len, out, cap, &out_len, &err)))
            rc = CLI_FAIL;
    } else if (!strcmp(codec, "lz4")) {
        if (!has_count || count > CODEC_MAX_FILE / es) {
            fprintf(stderr, "aptomo codec: lz4 decode needs --count N elements (at most %zu bytes)\n",
                    CODEC_MAX_FILE);
            rc = CLI_USAGE;
            goto done;
        }
        out_len = (size_t)count * es;
        if (!(out = malloc(out_len ? out_len : 1)))
            goto nomem;
        if ((lib = apt_lz4_decode_raw(in, len, out, out_len, &err)))
            rc = CLI_USAGE;
    } else {
        fprintf(stderr, "aptomo codec: unknown codec '%s' (bslz4, h5lz4, lz4, bitshuffle, bitunshuffle)\n", codec);
        rc = CLI_USAGE;
        goto done;
    }
    if (lib)
        fprintf(stderr, "%s: %s\n", in_path, err.msg);
    else if (rc == CLI_OK)
        rc = write_out(out_path, out, out_len);
    goto done;
nomem:
    fprintf(stderr, "aptomo codec: out of memory\n");
    rc = CLI_FAIL;
done:
    free(in);
    free(out);
    return rc;
}
