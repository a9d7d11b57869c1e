/* curve.c - ZeroMQ CURVE key files (formats in aptomo/curve.h). The keys themselves are libzmq's
 * (zmq_curve_keypair, zmq_curve_public, zmq_z85_*); this file only reads and writes them, with the checks an
 * operator needs: a secret readable by others is refused, a pair whose halves do not match is refused, a secret key
 * pasted into a client list is refused, every fault names FILE:LINE. Reads are bounded (a list holds at most
 * APT_CURVE_MAX_CLIENTS keys, a line 1 KiB). */
#include "aptomo/curve.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#define LINE_MAX_BYTES 1024
#define LIST_MAX_FILES 4096

enum { LINE_NONE = 0, LINE_PUBLIC = 1, LINE_SECRET = 2, LINE_BAD = -1 };

int apt_curve_available(void)
{
    return zmq_has("curve");
}

static int is_z85(const char *s, size_t n)
{
    static const char alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
    if (n != APT_CURVE_Z85)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!s[i] || !strchr(alphabet, s[i]))
            return 0;
    return 1;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

/* One line: a bare key (public), "public-key: K", "secret-key: K", a comment or blank, or bad. */
static int parse_line(char *line, char key[APT_CURVE_Z85 + 1])
{
    char *s = trim(line);
    int kind = LINE_PUBLIC;
    if (!is_z85(s, strlen(s))) {
        if (!*s || *s == '#')
            return LINE_NONE;
        if (!strncmp(s, "public-key:", 11))
            s = trim(s + 11);
        else if (!strncmp(s, "secret-key:", 11))
            s = trim(s + 11), kind = LINE_SECRET;
        else
            return LINE_BAD;
        if (!is_z85(s, strlen(s)))
            return LINE_BAD;
    }
    memcpy(key, s, APT_CURVE_Z85 + 1);
    return kind;
}

/* Calls fn for every key line of an open file; fn returns 0 to go on. Faults name path:line. */
typedef int (*line_fn)(void *arg, const char *path, int lineno, int kind, const char *key, apt_error *err);

static int read_lines(FILE *f, const char *path, line_fn fn, void *arg, apt_error *err)
{
    char buf[LINE_MAX_BYTES + 2];
    int lineno = 0;
    while (fgets(buf, sizeof buf, f)) {
        lineno++;
        if (!strchr(buf, '\n') && !feof(f))
            return apt_err(err, APT_EINVAL, "%s:%d: line longer than %d bytes", path, lineno, LINE_MAX_BYTES);
        char key[APT_CURVE_Z85 + 1];
        int kind = parse_line(buf, key);
        if (kind == LINE_BAD)
            return apt_err(err, APT_EINVAL, "%s:%d: not a CURVE key (expected 40 Z85 characters, "
                           "'public-key: KEY', 'secret-key: KEY' or a '#' comment)", path, lineno);
        int rc = kind ? fn(arg, path, lineno, kind, key, err) : 0;
        if (rc)
            return rc;
    }
    if (ferror(f))
        return apt_err(err, APT_EIO, "%s: read: %s", path, strerror(errno));
    return APT_OK;
}

static FILE *open_regular(const char *path, struct stat *st, apt_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        apt_err(err, APT_EIO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        apt_err(err, APT_EINVAL, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    FILE *f = fdopen(fd, "r");
    if (!f) {
        apt_err(err, APT_EIO, "%s: %s", path, strerror(errno));
        close(fd);
    }
    return f;
}

typedef struct pair_acc {
    apt_curve_pair *kp;
    int has_pub, has_sec;
} pair_acc;

static int on_pair_line(void *arg, const char *path, int lineno, int kind, const char *key, apt_error *err)
{
    pair_acc *a = arg;
    int *has = kind == LINE_SECRET ? &a->has_sec : &a->has_pub;
    if (*has)
        return apt_err(err, APT_EINVAL, "%s:%d: a second %s key", path, lineno,
                       kind == LINE_SECRET ? "secret" : "public");
    *has = 1;
    memcpy(kind == LINE_SECRET ? a->kp->sec : a->kp->pub, key, APT_CURVE_Z85 + 1);
    return APT_OK;
}

int apt_curve_read_pair(const char *path, apt_curve_pair *kp, apt_error *err)
{
    memset(kp, 0, sizeof *kp);
    struct stat st;
    FILE *f = open_regular(path, &st, err);
    if (!f)
        return err && err->code ? err->code : APT_EIO;
    pair_acc a = {kp, 0, 0};
    int rc = read_lines(f, path, on_pair_line, &a, err);
    fclose(f);
    /* what it is first (a NAME.pub given by mistake is named as such), then who else can read it */
    if (!rc && !a.has_sec)
        rc = apt_err(err, APT_EINVAL, "%s: no 'secret-key:' line (a key pair file is what `aptomo keygen` writes "
                     "as NAME.key)", path);
    if (!rc && (st.st_mode & (S_IRWXG | S_IRWXO)))
        rc = apt_err(err, APT_EINVAL, "%s has mode %04o: a secret key must be accessible to its owner only "
                     "(chmod 600 %s)", path, (unsigned)(st.st_mode & 07777), path);
    char derived[APT_CURVE_Z85 + 1];
    if (!rc && zmq_curve_public(derived, kp->sec) != 0)
        rc = apt_err(err, APT_EINVAL, "%s: the secret key does not decode", path);
    if (!rc && a.has_pub && strcmp(derived, kp->pub))
        rc = apt_err(err, APT_EINVAL, "%s: the public key is not the secret key's (a mixed-up pair)", path);
    if (!rc)
        memcpy(kp->pub, derived, sizeof derived);
    if (rc)
        memset(kp, 0, sizeof *kp); /* no secret left on the stack of a caller that ignores the error */
    return rc;
}

static int on_public_line(void *arg, const char *path, int lineno, int kind, const char *key, apt_error *err)
{
    char *pub = arg;
    if (kind == LINE_SECRET)
        return APT_OK; /* NAME.key names its public key too */
    if (pub[0])
        return apt_err(err, APT_EINVAL, "%s:%d: a second public key (give one server key)", path, lineno);
    memcpy(pub, key, APT_CURVE_Z85 + 1);
    return APT_OK;
}

int apt_curve_read_public(const char *path, char pub[APT_CURVE_Z85 + 1], apt_error *err)
{
    pub[0] = '\0';
    struct stat st;
    FILE *f = open_regular(path, &st, err);
    if (!f)
        return err && err->code ? err->code : APT_EIO;
    int rc = read_lines(f, path, on_public_line, pub, err);
    fclose(f);
    if (!rc && !pub[0])
        rc = apt_err(err, APT_EINVAL, "%s: no public key in it", path);
    return rc;
}

typedef struct list_acc {
    unsigned char (*keys)[32];
    size_t n, cap;
} list_acc;

static int on_list_line(void *arg, const char *path, int lineno, int kind, const char *key, apt_error *err)
{
    list_acc *a = arg;
    if (kind == LINE_SECRET)
        return apt_err(err, APT_EINVAL, "%s:%d: a secret key in a client list (list the clients' public keys, "
                       "NAME.pub; and make a new pair: this secret is no longer secret)", path, lineno);
    if (a->n == APT_CURVE_MAX_CLIENTS)
        return apt_err(err, APT_ERANGE, "%s:%d: more than %d client keys", path, lineno, APT_CURVE_MAX_CLIENTS);
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 16;
        void *p = realloc(a->keys, cap * sizeof *a->keys);
        if (!p)
            return apt_err(err, APT_ENOMEM, "out of memory");
        a->keys = p;
        a->cap = cap;
    }
    if (!zmq_z85_decode(a->keys[a->n], key))
        return apt_err(err, APT_EINVAL, "%s:%d: the key does not decode", path, lineno);
    a->n++;
    return APT_OK;
}

static int read_list_file(const char *path, list_acc *a, apt_error *err)
{
    struct stat st;
    FILE *f = open_regular(path, &st, err);
    if (!f)
        return err && err->code ? err->code : APT_EIO;
    int rc = read_lines(f, path, on_list_line, a, err);
    fclose(f);
    return rc;
}

static int cmp_key(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

static int read_list_dir(const char *path, list_acc *a, apt_error *err)
{
    DIR *dir = opendir(path);
    if (!dir)
        return apt_err(err, APT_EIO, "%s: %s", path, strerror(errno));
    int rc = APT_OK, files = 0;
    struct dirent *e;
    while (!rc && (e = readdir(dir))) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len < 5 || strcmp(e->d_name + len - 4, ".pub"))
            continue;
        if (++files > LIST_MAX_FILES) {
            rc = apt_err(err, APT_ERANGE, "%s: more than %d .pub files", path, LIST_MAX_FILES);
            break;
        }
        char *file = NULL;
        if (asprintf(&file, "%s/%s", path, e->d_name) < 0)
            rc = apt_err(err, APT_ENOMEM, "out of memory");
        else
            rc = read_list_file(file, a, err);
        free(file);
    }
    closedir(dir);
    return rc;
}

int apt_curve_read_list(const char *path, unsigned char (**keys)[32], size_t *n, apt_error *err)
{
    *keys = NULL;
    *n = 0;
    struct stat st;
    if (stat(path, &st) != 0)
        return apt_err(err, APT_EIO, "%s: %s", path, strerror(errno));
    list_acc a = {0};
    int rc = S_ISDIR(st.st_mode) ? read_list_dir(path, &a, err) : read_list_file(path, &a, err);
    if (rc) {
        free(a.keys);
        return rc;
    }
    if (a.n) {
        qsort(a.keys, a.n, sizeof *a.keys, cmp_key);
        size_t w = 1;
        for (size_t i = 1; i < a.n; i++)
            if (memcmp(a.keys[i], a.keys[w - 1], 32))
                memcpy(a.keys[w++], a.keys[i], 32);
        a.n = w;
    }
    *keys = a.keys;
    *n = a.n;
    return APT_OK;
}

int apt_curve_list_has(const unsigned char (*keys)[32], size_t n, const unsigned char *key)
{
    return n && bsearch(key, keys, n, sizeof *keys, cmp_key) != NULL;
}

int apt_curve_generate(apt_curve_pair *kp, apt_error *err)
{
    if (!apt_curve_available())
        return apt_err(err, APT_ENOTSUP, "this libzmq was built without CURVE (libsodium)");
    if (zmq_curve_keypair(kp->pub, kp->sec) != 0)
        return apt_err(err, APT_EIO, "zmq_curve_keypair: %s", zmq_strerror(errno));
    return APT_OK;
}

static int write_new(const char *path, mode_t mode, const char *text, apt_error *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return apt_err(err, APT_EIO, "%s: %s", path, errno == EEXIST ? "exists, not overwritten" : strerror(errno));
    size_t len = strlen(text);
    int ok = fchmod(fd, mode) == 0 && write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
    int e = errno;
    if (close(fd) != 0 || !ok) {
        unlink(path);
        return apt_err(err, APT_EIO, "%s: write: %s", path, strerror(ok ? errno : e));
    }
    return APT_OK;
}

int apt_curve_write_pair(const char *base, const apt_curve_pair *kp, apt_error *err)
{
    char *kpath = NULL, *ppath = NULL, *ktext = NULL, *ptext = NULL;
    int rc = APT_OK;
    if (asprintf(&kpath, "%s.key", base) < 0 || asprintf(&ppath, "%s.pub", base) < 0 ||
        asprintf(&ktext, "# aptomo CURVE key pair (Z85). Keep this file secret: mode 0600, never copied to another "
                 "host.\n# Give %s to the peers that must recognise this key.\npublic-key: %s\nsecret-key: %s\n",
                 ppath, kp->pub, kp->sec) < 0 ||
        asprintf(&ptext, "# aptomo CURVE public key (Z85) of %s\n%s\n", kpath, kp->pub) < 0) {
        rc = apt_err(err, APT_ENOMEM, "out of memory");
        goto done;
    }
    struct stat st;
    /* both names checked first, so a refusal writes nothing */
    if (lstat(kpath, &st) == 0 || lstat(ppath, &st) == 0) {
        rc = apt_err(err, APT_EINVAL, "%s exists, not overwritten (remove it first or choose another name)",
                     lstat(kpath, &st) == 0 ? kpath : ppath);
        goto done;
    }
    if (!(rc = write_new(kpath, 0600, ktext, err)) && (rc = write_new(ppath, 0644, ptext, err)))
        unlink(kpath);
done:
    if (ktext)
        memset(ktext, 0, strlen(ktext));
    free(kpath);
    free(ppath);
    free(ktext);
    free(ptext);
    return rc;
}

int apt_curve_client(void *sock, const char *key_file, const char *server_key_file, apt_error *err)
{
    if (!apt_curve_available())
        return apt_err(err, APT_ENOTSUP, "this libzmq was built without CURVE (libsodium)");
    apt_curve_pair kp;
    char server[APT_CURVE_Z85 + 1];
    int rc = apt_curve_read_pair(key_file, &kp, err);
    if (!rc)
        rc = apt_curve_read_public(server_key_file, server, err);
    if (!rc && (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server, sizeof server) != 0 ||
                zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, kp.pub, sizeof kp.pub) != 0 ||
                zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, kp.sec, sizeof kp.sec) != 0))
        rc = apt_err(err, APT_EIO, "CURVE socket options: %s", zmq_strerror(errno));
    memset(&kp, 0, sizeof kp);
    return rc;
}
