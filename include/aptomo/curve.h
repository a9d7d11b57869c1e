/* curve.h - ZeroMQ CURVE key files, shared by aptomod (server keys, authorised clients) and the aptomo clients.
 * Formats (text, Z85 = ZeroMQ's base-85, 40 characters per 32-byte key; '#' lines are comments):
 *   NAME.key   the key pair, mode 0600:   "public-key: Z85" and "secret-key: Z85" lines
 *   NAME.pub   the public key alone:      one line "Z85"
 *   client lists: a file of public keys, one per line (a bare Z85 or "public-key: Z85"), or a directory whose
 *   *.pub files are read. A line of exactly 40 Z85 characters is a key even when it starts with '#'. */
#ifndef APTOMO_CURVE_H
#define APTOMO_CURVE_H

#include <stddef.h>

#include "aptomo/error.h"
#include "aptomo/export.h"

APT_API_BEGIN

#define APT_CURVE_Z85 40               /* characters of one key in Z85 */
#define APT_CURVE_MAX_CLIENTS 65536    /* keys in one client list */

typedef struct apt_curve_pair {
    char pub[APT_CURVE_Z85 + 1], sec[APT_CURVE_Z85 + 1];
} apt_curve_pair;

/* 1 if this libzmq was built with CURVE. */
int apt_curve_available(void);
/* A new key pair (zmq_curve_keypair). */
int apt_curve_generate(apt_curve_pair *kp, apt_error *err);
/* NAME.key (a pair): refused when group or others have any access to it (the secret would be exposed), or when
   the secret does not give the public key. Errors name the file (and line). */
int apt_curve_read_pair(const char *path, apt_curve_pair *kp, apt_error *err);
/* The one public key of a file (NAME.pub, or NAME.key's public-key line). */
int apt_curve_read_public(const char *path, char pub[APT_CURVE_Z85 + 1], apt_error *err);
/* A client list (file or directory of *.pub) as binary 32-byte keys, sorted, duplicates removed; *keys malloc'd
   (NULL when n = 0). A secret-key line in a list is refused: the list is for public keys only. */
int apt_curve_read_list(const char *path, unsigned char (**keys)[32], size_t *n, apt_error *err);
/* 1 if key (32 bytes) is in the sorted list. */
int apt_curve_list_has(const unsigned char (*keys)[32], size_t n, const unsigned char *key);
/* BASE.key (0600) and BASE.pub; refuses to overwrite either (nothing is written then). */
int apt_curve_write_pair(const char *base, const apt_curve_pair *kp, apt_error *err);
/* A client socket (before connect): our pair from key_file, the server's public key from server_key_file. */
int apt_curve_client(void *sock, const char *key_file, const char *server_key_file, apt_error *err);

APT_API_END

#endif
