/* state.c - crash-safe state under storage.dir/state (docs/FILES.md "State files"): every reconstructed angle
 * (its slices, weight, geometry and counters) and the Approximant's running sums, each in a sealed file
 * (include/aptomo/sealed.h: CRC-checked, replaced atomically). Order per angle: angle file, then the sums, then
 * the PUB messages, so whatever was announced survives a kill -9. On start the daemon resumes from it: the sums
 * are loaded, angles saved after the last sums are added again, the live baseline is rebuilt from the angle files,
 * and a series id that is already in the Approximant is recognised when the detector sends it again. A file that
 * fails its checksum is renamed *.corrupt, reported, and never used. Recon worker only, except the counters. */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "aptd_int.h"
#include "aptomo/fsutil.h"
#include "aptomo/log.h"
#include "aptomo/sealed.h"

#define FORMAT 1

/* What makes saved angles and sums comparable: the physics and the grid (not n_star, endpoints, log level...). */
static json_t *fingerprint(const aptd *d)
{
    const apt_angle_cfg *a = &d->s.angle;
    const apt_grid3 *g = &a->grid;
    return json_pack("{s:i,s:[i,i,i],s:[f,f,f],s:f,s:f,s:f,s:i,s:i,s:i,s:i,s:i,s:i}", "format", FORMAT, "grid",
                     g->Z, g->Y, g->X, "voxel_m", g->vz, g->vy, g->vx, "energy_keV", a->energy_keV, "distance_m",
                     a->distance_m, "pixel_m", a->det_pixel_m, "crop", a->crop, "slices", a->L, "modes", a->M,
                     "iterations", a->iterations, "batches", a->batches, "pad_px", a->pad_px);
}

static void set_error(aptd *d, const char *msg)
{
    aptd_store *st = &d->store;
    pthread_mutex_lock(&st->mu);
    snprintf(st->last_error, sizeof st->last_error, "%s", msg);
    pthread_mutex_unlock(&st->mu);
}

static void path_of(const aptd *d, char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/state/%s", d->s.storage_dir, name);
}

/* A file that fails its check is kept for inspection, out of the way of the next start. */
static void quarantine(aptd *d, const char *path, const char *why)
{
    char dst[1300];
    snprintf(dst, sizeof dst, "%s.corrupt", path);
    apt_error_log("state: %s: not used (%s); kept as %s", path, why, dst);
    if (rename(path, dst))
        apt_error_log("state: cannot rename %s: %s", path, strerror(errno));
    atomic_fetch_add(&d->store.corrupt, 1);
    set_error(d, why);
}

static int done_push(aptd_store *st, uint64_t seq, uint64_t series, double angle)
{
    if (st->n_done == st->cap_done) {
        size_t cap = st->cap_done ? 2 * st->cap_done : 64;
        if (cap > APTD_MAX_ANGLES)
            return -1;
        aptd_done *p = realloc(st->done, cap * sizeof *p);
        if (!p)
            return -1;
        st->done = p;
        st->cap_done = cap;
    }
    st->done[st->n_done++] = (aptd_done){seq, series, angle};
    return 0;
}

int aptd_state_seen(const aptd *d, const aptd_angle *a)
{
    const aptd_store *st = &d->store;
    for (size_t i = 0; i < st->n_done; i++)
        if (st->done[i].series == a->series_id && (!a->has_angle || fabs(st->done[i].angle_deg - a->angle_deg) < 1e-6))
            return 1;
    return 0;
}

int aptd_state_save_angle(aptd *d, uint64_t seq, const aptd_angle *a, const apt_angle_result *res,
                          double wavelength, apt_error *err)
{
    json_t *h = json_pack("{s:s,s:o,s:I,s:I,s:s,s:I,s:f,s:{s:f,s:i,s:i,s:i,s:f,s:f},s:f,s:I,s:b}", "kind", "angle",
                          "fingerprint", fingerprint(d), "seq", (json_int_t)seq, "series", (json_int_t)a->series_id,
                          "unique_id", a->unique_id, "index", (json_int_t)a->index, "angle_deg", a->angle_deg, "sg",
                          "theta_deg", res->sg.theta_deg, "L", res->sg.L, "Ny", res->sg.Ny, "Nx", res->sg.Nx,
                          "delta_m", res->sg.delta_m, "dz_m", res->sg.dz_m, "wavelength_m", wavelength,
                          "frames_used", (json_int_t)res->frames_used, "weight", res->weight != NULL);
    char *text = h ? json_dumps(h, JSON_COMPACT) : NULL;
    json_decref(h);
    if (!text)
        return apt_err(err, APT_ENOMEM, "state: out of memory");
    size_t px = (size_t)res->sg.Ny * res->sg.Nx;
    apt_sealed_part parts[2] = {{res->object, (size_t)res->sg.L * px * 2 * sizeof(float)},
                                {res->weight, res->weight ? px * sizeof(float) : 0}};
    char name[64], path[1200];
    snprintf(name, sizeof name, "angle_%06llu.bin", (unsigned long long)seq);
    path_of(d, path, sizeof path, name);
    int rc = apt_sealed_write(path, text, parts, 2, err);
    free(text);
    return rc;
}

int aptd_state_save_sums(aptd *d, const apt_approx *ap, apt_error *err)
{
    aptd_store *st = &d->store;
    json_t *done = json_array();
    for (size_t i = 0; i < st->n_done; i++)
        json_array_append_new(done, json_pack("[I,I,f]", (json_int_t)st->done[i].seq,
                                              (json_int_t)st->done[i].series, st->done[i].angle_deg));
    const double *sw, *swv;
    size_t n;
    apt_approx_sums(ap, &sw, &swv, &n);
    json_t *h = json_pack("{s:s,s:o,s:I,s:i,s:I,s:o}", "kind", "approximant", "fingerprint", fingerprint(d),
                          "voxels", (json_int_t)n, "angles", apt_approx_angles(ap), "next_seq",
                          (json_int_t)st->next_seq, "done", done);
    char *text = h ? json_dumps(h, JSON_COMPACT) : NULL;
    json_decref(h);
    if (!text)
        return apt_err(err, APT_ENOMEM, "state: out of memory");
    apt_sealed_part parts[2] = {{sw, n * sizeof *sw}, {swv, n * sizeof *swv}};
    char path[1200];
    path_of(d, path, sizeof path, "approximant.bin");
    int rc = apt_sealed_write(path, text, parts, 2, err);
    free(text);
    return rc;
}

int aptd_state_add(aptd *d, uint64_t seq, const aptd_angle *a)
{
    return done_push(&d->store, seq, a->series_id, a->angle_deg);
}

/* Open a state file of this kind: checksum, then its JSON header, then the physics and grid it was made with
   (APT_ESTATE when they differ from ours: another configuration's state). */
static int open_state(aptd *d, const char *path, const char *kind, apt_sealed **s, json_t **h, uint64_t *pl,
                      apt_error *err)
{
    *h = NULL;
    const char *text;
    int rc = apt_sealed_open(path, s, &text, pl, err);
    if (rc)
        return rc;
    json_error_t je;
    json_t *fp = fingerprint(d);
    *h = json_loads(text, 0, &je);
    if (!*h || !json_is_string(json_object_get(*h, "kind")) ||
        strcmp(json_string_value(json_object_get(*h, "kind")), kind))
        rc = apt_err(err, APT_ECORRUPT, "%s: header is not a saved %s's", path, kind);
    else if (!json_equal(json_object_get(*h, "fingerprint"), fp))
        rc = apt_err(err, APT_ESTATE, "%s: saved with other physics or grid settings", path);
    json_decref(fp);
    if (rc) {
        json_decref(*h);
        *h = NULL;
        apt_sealed_close(s);
    }
    return rc;
}

/* Load a saved angle: header fields into *info, slices and weight into res (apt_angle_result_free). */
typedef struct saved_angle {
    uint64_t seq, series;
    double angle_deg, wavelength;
} saved_angle;

static int load_angle(aptd *d, const char *path, saved_angle *info, apt_angle_result *res, apt_error *err)
{
    memset(res, 0, sizeof *res);
    apt_sealed *s = NULL;
    json_t *h;
    uint64_t pl;
    int rc = open_state(d, path, "angle", &s, &h, &pl, err);
    if (rc)
        return rc;
    json_int_t seq = 0, series = 0, L = 0, Ny = 0, Nx = 0;
    int has_w = 0;
    if (json_unpack(h, "{s:I,s:I,s:F,s:{s:F,s:I,s:I,s:I,s:F,s:F},s:F,s:b}", "seq", &seq, "series", &series,
                    "angle_deg", &info->angle_deg, "sg", "theta_deg", &res->sg.theta_deg, "L", &L, "Ny", &Ny, "Nx",
                    &Nx, "delta_m", &res->sg.delta_m, "dz_m", &res->sg.dz_m, "wavelength_m", &info->wavelength,
                    "weight", &has_w) ||
        seq < 1 || series < 0)
        rc = apt_err(err, APT_ECORRUPT, "%s: header is not a saved angle's", path);
    else {
        res->sg.L = L > 0 && L <= 1024 ? (int)L : 0;
        res->sg.Ny = Ny > 0 && Ny <= 32768 ? (int)Ny : 0;
        res->sg.Nx = Nx > 0 && Nx <= 32768 ? (int)Nx : 0;
        rc = apt_stack_geom_check(&res->sg, err);
        size_t px = (size_t)res->sg.Ny * res->sg.Nx, no = (size_t)res->sg.L * px * 2;
        if (!rc && pl != (no + (has_w ? px : 0)) * sizeof(float))
            rc = apt_err(err, APT_ECORRUPT, "%s: payload of %llu bytes does not match the header", path,
                         (unsigned long long)pl);
        if (!rc && (!(res->object = malloc(no * sizeof(float))) || (has_w && !(res->weight = malloc(px * 4)))))
            rc = apt_err(err, APT_ENOMEM, "%s: out of memory", path);
        if (!rc)
            rc = apt_sealed_read(s, res->object, no * sizeof(float), err);
        if (!rc && has_w)
            rc = apt_sealed_read(s, res->weight, px * sizeof(float), err);
        info->seq = (uint64_t)seq;
        info->series = (uint64_t)series;
    }
    json_decref(h);
    apt_sealed_close(&s);
    if (rc)
        apt_angle_result_free(res);
    return rc;
}

/* The sums file: 0 loaded, 1 absent, <0 unusable (err says why). */
static int load_sums(aptd *d, apt_approx *ap, apt_error *err)
{
    char path[1200];
    path_of(d, path, sizeof path, "approximant.bin");
    if (access(path, F_OK))
        return 1;
    apt_sealed *s = NULL;
    json_t *h, *done = NULL;
    uint64_t pl;
    int rc = open_state(d, path, "approximant", &s, &h, &pl, err);
    if (rc)
        return rc;
    json_int_t voxels = 0, next = 0;
    int angles = 0;
    double *sw = NULL, *swv = NULL;
    if (json_unpack(h, "{s:I,s:i,s:I,s:o}", "voxels", &voxels, "angles", &angles, "next_seq", &next, "done",
                    &done) ||
        !json_is_array(done) || (size_t)angles != json_array_size(done))
        rc = apt_err(err, APT_ECORRUPT, "%s: header is not the Approximant's", path);
    else {
        size_t n = (size_t)voxels;
        const double *cur_sw, *cur_swv;
        size_t cur_n;
        apt_approx_sums(ap, &cur_sw, &cur_swv, &cur_n);
        if (n != cur_n || pl != 2 * n * sizeof(double))
            rc = apt_err(err, APT_ECORRUPT, "%s: %lld voxels, the grid has %zu", path, (long long)voxels, cur_n);
        if (!rc && (!(sw = malloc(n * sizeof *sw)) || !(swv = malloc(n * sizeof *swv))))
            rc = apt_err(err, APT_ENOMEM, "%s: out of memory", path);
        if (!rc)
            rc = apt_sealed_read(s, sw, n * sizeof *sw, err);
        if (!rc)
            rc = apt_sealed_read(s, swv, n * sizeof *swv, err);
        d->store.n_done = 0;
        for (size_t i = 0; !rc && i < json_array_size(done); i++) {
            json_int_t q, sid;
            double ang;
            if (json_unpack(json_array_get(done, i), "[I,I,F]", &q, &sid, &ang) || q < 1 || sid < 0 ||
                done_push(&d->store, (uint64_t)q, (uint64_t)sid, ang))
                rc = apt_err(err, APT_ECORRUPT, "%s: entry %zu of its angle list is malformed", path, i);
        }
        if (!rc)
            rc = apt_approx_import(ap, sw, swv, n, angles, err);
        if (!rc)
            d->store.next_seq = next > 0 ? (uint64_t)next : 1;
    }
    free(sw);
    free(swv);
    json_decref(h);
    apt_sealed_close(&s);
    return rc;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names in dir/ that start with prefix and end with ".bin". */
size_t aptd_state_list(const char *dir, const char *prefix, char ***out)
{
    *out = NULL;
    DIR *dp = opendir(dir);
    if (!dp)
        return 0;
    size_t n = 0, cap = 0;
    char **names = NULL;
    struct dirent *e;
    size_t pl = strlen(prefix);
    while ((e = readdir(dp))) {
        size_t l = strlen(e->d_name);
        if (strncmp(e->d_name, prefix, pl) || l < pl + 4 || strcmp(e->d_name + l - 4, ".bin"))
            continue;
        if (n == cap) {
            char **p = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof *p);
            if (!p)
                break;
            names = p;
        }
        if (!(names[n] = strdup(e->d_name)))
            break;
        n++;
    }
    closedir(dp);
    if (n)
        qsort(names, n, sizeof *names, cmp_name);
    *out = names;
    return n;
}

/* Another scan's or another configuration's state is moved aside whole, never mixed in or deleted. */
static void archive(aptd *d, const char *why)
{
    char dir[1200], dst[1300];
    path_of(d, dir, sizeof dir, "");
    dir[strlen(dir) - 1] = 0;
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    for (int k = 0; k < 1000; k++) {
        snprintf(dst, sizeof dst, "%s-%s%s%.0d", dir, stamp, k ? "-" : "", k);
        if (access(dst, F_OK) == 0)
            continue;
        if (rename(dir, dst) == 0)
            apt_warn("state: %s; the previous state is kept in %s", why, dst);
        else
            apt_error_log("state: cannot move %s aside: %s", dir, strerror(errno));
        break;
    }
    apt_mkdir_p(dir, 0750, NULL);
}

void aptd_state_reset(aptd *d)
{
    aptd_store *st = &d->store;
    if (st->n_done)
        archive(d, "reset: a new tomographic scan starts");
    st->n_done = 0;
    st->next_seq = 1;
}

/* A kill -9 between a file's bytes and its rename leaves NAME.tmp: never read, removed on the next start. */
void aptd_state_remove_tmp(const char *dir)
{
    DIR *dp = opendir(dir);
    struct dirent *e;
    char path[1400];
    while (dp && (e = readdir(dp))) {
        size_t l = strlen(e->d_name);
        if (l > 4 && !strcmp(e->d_name + l - 4, ".tmp")) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    }
    if (dp)
        closedir(dp);
}

int aptd_state_resume(aptd *d, apt_approx *ap, double k, apt_error *err)
{
    aptd_store *st = &d->store;
    char dir[1200];
    path_of(d, dir, sizeof dir, "");
    int rc = apt_mkdir_p(dir, 0750, err);
    if (rc)
        return apt_err_prefix(err, rc, "storage.dir: ");
    st->next_seq = 1;
    aptd_state_remove_tmp(dir);
    apt_error e = {0};
    int sums = load_sums(d, ap, &e);
    char path[1300];
    path_of(d, path, sizeof path, "approximant.bin");
    if (sums == APT_ESTATE) {
        archive(d, e.msg);
        return APT_OK;
    }
    if (sums < 0) { /* rebuild from the angle files */
        quarantine(d, path, e.msg);
        apt_approx_reset(ap);
        st->n_done = 0;
    }
    char **names;
    size_t n = aptd_state_list(dir, "angle_", &names);
    size_t added = 0, rebuilt = 0;
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s%s", dir, names[i]);
        saved_angle info;
        apt_angle_result res;
        apt_err_clear(&e);
        int lrc = load_angle(d, path, &info, &res, &e);
        if (lrc == APT_ESTATE) { /* another configuration's angles: move the whole state aside */
            for (size_t j = i; j < n; j++)
                free(names[j]);
            free(names);
            apt_approx_reset(ap);
            st->n_done = 0;
            archive(d, e.msg);
            return APT_OK;
        }
        if (lrc) {
            quarantine(d, path, e.msg);
            free(names[i]);
            continue;
        }
        int in_sums = 0;
        for (size_t j = 0; j < st->n_done; j++)
            in_sums |= st->done[j].seq == info.seq;
        if (!in_sums) { /* saved after the last sums (or the sums are gone): add it now */
            if (apt_approx_add(ap, &res.sg, info.wavelength, res.object, res.weight, &e) ||
                done_push(st, info.seq, info.series, info.angle_deg)) {
                quarantine(d, path, e.msg[0] ? e.msg : "cannot add it to the Approximant");
                apt_angle_result_free(&res);
                free(names[i]);
                continue;
            }
            added++;
        }
        if (info.seq >= st->next_seq)
            st->next_seq = info.seq + 1;
        aptd_baseline_push(d, &res, k, info.angle_deg);
        rebuilt++;
        apt_angle_result_free(&res);
        free(names[i]);
    }
    free(names);
    if (rebuilt < st->n_done)
        apt_warn("state: %zu of the Approximant's %zu angles have no usable angle file; the live baseline lacks them",
                 st->n_done - rebuilt, st->n_done);
    atomic_store(&st->resumed, st->n_done);
    if (st->n_done)
        apt_info("state: resumed %zu angles from %s (%zu added from angle files saved after the last sums)",
                 st->n_done, dir, added);
    return APT_OK; /* the sums are written with the next angle; until then a restart adds the same files again */
}

void aptd_state_status(aptd *d, json_t *h)
{
    aptd_store *st = &d->store;
    pthread_mutex_lock(&st->mu);
    json_t *o = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "resumed_angles", (json_int_t)atomic_load(&st->resumed),
                          "corrupt_files", (json_int_t)atomic_load(&st->corrupt), "write_errors",
                          (json_int_t)atomic_load(&st->write_errors), "resent_skipped",
                          (json_int_t)atomic_load(&st->skipped), "queued_on_disk",
                          (json_int_t)atomic_load(&st->on_disk), "spilled", (json_int_t)atomic_load(&st->spilled));
    json_object_set_new(o, "error", st->last_error[0] ? json_string(st->last_error) : json_null());
    pthread_mutex_unlock(&st->mu);
    json_object_set_new(h, "state_files", o);
}

void aptd_state_error(aptd *d, const char *msg)
{
    atomic_fetch_add(&d->store.write_errors, 1);
    set_error(d, msg);
}

void aptd_state_free(aptd *d)
{
    free(d->store.done);
    d->store.done = NULL;
    d->store.n_done = d->store.cap_done = 0;
}
