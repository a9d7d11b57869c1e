/* fuzz_sealed.c - libFuzzer target: the crash-safe state files' container (include/aptomo/sealed.h) and the queued
 * angle header the daemon reads back after a restart (daemon/angleq.c). Half of the inputs get their CRC-32 fixed up
 * before the file is written, so the fuzzer explores the length fields and the header past the checksum too.
 * Checked: an accepted file's payload reads back exactly, a read past it fails; a refused file names itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "aptd_int.h"
#include "aptomo/sealed.h"

static void expect(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_sealed: contract broken: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    snprintf(path, sizeof path, "/dev/shm/fuzz_sealed_%d", (int)getpid());
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    if (size >= 5 && (data[size - 1] & 1)) { /* fix the CRC: get past the checksum */
        uLong crc = crc32(0, buf, (uInt)(size - 4));
        for (int i = 0; i < 4; i++)
            buf[size - 4 + i] = (uint8_t)(crc >> (8 * i));
    }
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, size, f) != size) {
        if (f)
            fclose(f);
        free(buf);
        return 0;
    }
    fclose(f);
    free(buf);
    apt_sealed *s = NULL;
    const char *header = NULL;
    uint64_t len = 0;
    apt_error err = {0};
    if (apt_sealed_open(path, &s, &header, &len, &err) != APT_OK) {
        expect(s == NULL && strstr(err.msg, path) != NULL, "a refused file without its name, or a handle");
    } else {
        expect(len <= size, "payload longer than the file");
        uint8_t chunk[256];
        uint64_t left = len;
        while (left) {
            size_t k = left > sizeof chunk ? sizeof chunk : (size_t)left;
            expect(apt_sealed_read(s, chunk, k, &err) == APT_OK, "payload does not read back");
            left -= k;
        }
        expect(apt_sealed_read(s, chunk, 1, &err) == APT_ECORRUPT, "read past the payload accepted");
        aptd_angle a = {0};
        if (aptd_angleq_parse(header, &a, len, &err, path) == APT_OK)
            expect(a.n >= 8 && a.n <= 4096 && a.n_frames >= 1, "queued angle outside its bounds");
        apt_sealed_close(&s);
    }
    unlink(path);
    return 0;
}
