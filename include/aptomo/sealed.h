/* sealed.h - checksummed, atomically replaced files for the daemon's crash-safe state (docs/FILES.md "State
 * files"). A file is magic "APTSEAL1", u32 LE header length, a JSON header, u64 LE payload length, the payload and a
 * u32 LE CRC-32 (zlib) of everything before it. It is written to PATH.tmp, fsynced, renamed over PATH and the
 * directory fsynced, so after a crash PATH is the old file or the new one, never a mix; a truncated or corrupted
 * file fails apt_sealed_open with APT_ECORRUPT and is never half-used. */
#ifndef APTOMO_SEALED_H
#define APTOMO_SEALED_H

#include <stddef.h>
#include <stdint.h>

#include "aptomo/error.h"
#include "aptomo/export.h"

APT_API_BEGIN

#define APT_SEALED_MAX_HEADER (1u << 20)

typedef struct apt_sealed_part {
    const void *data;
    size_t len;
} apt_sealed_part;

/* Write header (JSON text) + the parts, in order, as the payload of PATH (atomic, durable). */
int apt_sealed_write(const char *path, const char *header, const apt_sealed_part *parts, size_t n_parts,
                     apt_error *err);

typedef struct apt_sealed apt_sealed;
/* Open PATH and verify it whole (sizes, CRC) before anything is returned: APT_ECORRUPT names what is wrong.
   *header (NUL-terminated, owned by the handle) and *payload_len describe it; the payload is then read in order. */
int apt_sealed_open(const char *path, apt_sealed **out, const char **header, uint64_t *payload_len,
                    apt_error *err);
/* The next len bytes of the payload; APT_ECORRUPT past its end. */
int apt_sealed_read(apt_sealed *s, void *buf, size_t len, apt_error *err);
void apt_sealed_close(apt_sealed **s);

/* Test-only fault injection for the crash-safety tests: when the environment variable APTOMO_CRASH_AT is "WHERE"
   or "WHERE@N", the process kills itself (SIGKILL) the first (N-th) time it passes point WHERE. */
void apt_crashpoint(const char *where);

APT_API_END

#endif
