/* sealed.c - checksummed files replaced atomically (include/aptomo/sealed.h). CRC-32 is zlib's. Readers verify
 * the whole file before handing out a byte, so a torn or bit-flipped state file is reported, never half-used. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "aptomo/sealed.h"

static const char MAGIC[8] = {'A', 'P', 'T', 'S', 'E', 'A', 'L', '1'};

void apt_crashpoint(const char *where)
{
    static int hits;
    const char *at = getenv("APTOMO_CRASH_AT");
    if (!at)
        return;
    size_t n = strlen(where);
    if (strncmp(at, where, n) || (at[n] && at[n] != '@'))
        return;
    if (++hits >= (at[n] == '@' ? atoi(at + n + 1) : 1)) {
        fprintf(stderr, "APTOMO_CRASH_AT=%s: killing the process at %s\n", at, where);
        raise(SIGKILL);
    }
}

static void le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* crc32() takes uInt lengths: feed large parts in pieces */
static uLong crc_add(uLong crc, const void *data, size_t len)
{
    const Bytef *p = data;
    while (len) {
        uInt k = len > (1u << 30) ? 1u << 30 : (uInt)len;
        crc = crc32(crc, p, k);
        p += k;
        len -= k;
    }
    return crc;
}

static int put(FILE *f, uLong *crc, const void *data, size_t len)
{
    *crc = crc_add(*crc, data, len);
    return len && fwrite(data, 1, len, f) != len ? -1 : 0;
}

static int fsync_dir_of(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return -1;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    free(copy);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int apt_sealed_write(const char *path, const char *header, const apt_sealed_part *parts, size_t n_parts,
                     apt_error *err)
{
    size_t hl = strlen(header);
    if (hl > APT_SEALED_MAX_HEADER)
        return apt_err(err, APT_ERANGE, "%s: header of %zu bytes exceeds %u", path, hl, APT_SEALED_MAX_HEADER);
    uint64_t pl = 0;
    for (size_t i = 0; i < n_parts; i++)
        pl += parts[i].len;
    size_t tl = strlen(path) + 5;
    char *tmp = malloc(tl);
    if (!tmp)
        return apt_err(err, APT_ENOMEM, "out of memory");
    snprintf(tmp, tl, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int e = errno;
        free(tmp);
        return apt_err(err, APT_EIO, "%s.tmp: cannot create: %s", path, strerror(e));
    }
    uLong crc = crc32(0, Z_NULL, 0);
    uint8_t b[8];
    int bad = put(f, &crc, MAGIC, 8);
    le32(b, (uint32_t)hl);
    bad |= put(f, &crc, b, 4);
    bad |= put(f, &crc, header, hl);
    le64(b, pl);
    bad |= put(f, &crc, b, 8);
    for (size_t i = 0; i < n_parts && !bad; i++)
        bad |= put(f, &crc, parts[i].data, parts[i].len);
    le32(b, (uint32_t)crc);
    if (!bad && fwrite(b, 1, 4, f) != 4)
        bad = 1;
    apt_crashpoint("sealed-written");
    if (!bad && (fflush(f) || fsync(fileno(f))))
        bad = 1;
    int e = errno;
    if (fclose(f))
        bad = 1, e = errno;
    apt_crashpoint("sealed-synced");
    if (!bad && rename(tmp, path))
        bad = 1, e = errno;
    if (bad) {
        unlink(tmp);
        free(tmp);
        return apt_err(err, APT_EIO, "%s: cannot write: %s", path, strerror(e));
    }
    free(tmp);
    apt_crashpoint("sealed-renamed");
    if (fsync_dir_of(path))
        return apt_err(err, APT_EIO, "%s: cannot sync its directory: %s", path, strerror(errno));
    return APT_OK;
}

struct apt_sealed {
    FILE *f;
    char *header;
    uint64_t left;
    char path[];
};

void apt_sealed_close(apt_sealed **sp)
{
    if (!sp || !*sp)
        return;
    if ((*sp)->f)
        fclose((*sp)->f);
    free((*sp)->header);
    free(*sp);
    *sp = NULL;
}

/* Check sizes and the CRC over the whole file (one streaming pass). */
static int verify(apt_sealed *s, uint64_t size, apt_error *err)
{
    uint8_t b[12];
    if (size < 8 + 4 + 8 + 4 || fread(b, 1, 12, s->f) != 12 || memcmp(b, MAGIC, 8))
        return apt_err(err, APT_ECORRUPT, "%s: not a sealed state file (bad magic or too short)", s->path);
    uint64_t hl = get_le(b + 8, 4);
    if (hl > APT_SEALED_MAX_HEADER || 24 + hl > size)
        return apt_err(err, APT_ECORRUPT, "%s: header length %llu does not fit the file (%llu bytes): truncated?",
                       s->path, (unsigned long long)hl, (unsigned long long)size);
    uint8_t chunk[1 << 16];
    uLong crc = crc32(0, Z_NULL, 0);
    crc = crc_add(crc, b, 12);
    uint64_t body = size - 12 - 4, at = 0;
    uint64_t pl = 0;
    while (at < body) {
        size_t k = body - at > sizeof chunk ? sizeof chunk : (size_t)(body - at);
        if (fread(chunk, 1, k, s->f) != k)
            return apt_err(err, APT_ECORRUPT, "%s: short read at byte %llu", s->path,
                           (unsigned long long)(12 + at));
        /* the payload length sits right after the header */
        for (size_t i = 0; i < k; i++) {
            uint64_t off = at + i;
            if (off >= hl && off < hl + 8)
                pl |= (uint64_t)chunk[i] << (8 * (off - hl));
        }
        crc = crc_add(crc, chunk, k);
        at += k;
    }
    uint8_t t[4];
    if (fread(t, 1, 4, s->f) != 4 || get_le(t, 4) != (crc & 0xffffffffu))
        return apt_err(err, APT_ECORRUPT, "%s: checksum mismatch (the file is damaged or was cut short)", s->path);
    if (pl != body - hl - 8)
        return apt_err(err, APT_ECORRUPT, "%s: payload length %llu does not match the file (%llu)", s->path,
                       (unsigned long long)pl, (unsigned long long)(body - hl - 8));
    s->left = pl;
    if (!(s->header = malloc(hl + 1)) || fseek(s->f, 12, SEEK_SET) || fread(s->header, 1, hl, s->f) != hl ||
        fseek(s->f, 8, SEEK_CUR))
        return apt_err(err, APT_EIO, "%s: cannot read the header back", s->path);
    s->header[hl] = 0;
    if (strlen(s->header) != hl)
        return apt_err(err, APT_ECORRUPT, "%s: NUL byte inside the header", s->path);
    return APT_OK;
}

int apt_sealed_open(const char *path, apt_sealed **out, const char **header, uint64_t *payload_len,
                    apt_error *err)
{
    *out = NULL;
    apt_sealed *s = calloc(1, sizeof *s + strlen(path) + 1);
    if (!s)
        return apt_err(err, APT_ENOMEM, "out of memory");
    strcpy(s->path, path);
    if (!(s->f = fopen(path, "rb"))) {
        int e = errno;
        apt_sealed_close(&s);
        return apt_err(err, APT_EIO, "%s: cannot open: %s", path, strerror(e));
    }
    int rc = fseek(s->f, 0, SEEK_END);
    long size = rc ? -1 : ftell(s->f);
    rc = size < 0 || fseek(s->f, 0, SEEK_SET) ? apt_err(err, APT_EIO, "%s: cannot size the file", path)
                                               : verify(s, (uint64_t)size, err);
    if (rc) {
        apt_sealed_close(&s);
        return rc;
    }
    *header = s->header;
    *payload_len = s->left;
    *out = s;
    return APT_OK;
}

int apt_sealed_read(apt_sealed *s, void *buf, size_t len, apt_error *err)
{
    if (len > s->left)
        return apt_err(err, APT_ECORRUPT, "%s: payload ends %llu bytes early", s->path,
                       (unsigned long long)(len - s->left));
    if (len && fread(buf, 1, len, s->f) != len)
        return apt_err(err, APT_EIO, "%s: read failed", s->path);
    s->left -= len;
    return APT_OK;
}
