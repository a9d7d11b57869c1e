/* cmd_dataset.c - `aptomo dataset --config C.yaml --count K [--seed S] ... -o DIR`: training pairs for the network.
 * Per IC: a scan simulated as `aptomo simulate` would (its own seed, layer count and pitch scale, dataset_plan.c),
 * the Approximant made from it by `aptomo approximant`'s code (approx_scan.c), and the ground truth on the same
 * grid. Decision: an IC is built in DIR/ic-NNN.part and renamed to DIR/ic-NNN when whole, so a killed run leaves
 * nothing that looks complete and a rerun resumes where it stopped; DIR/dataset.json says what DIR holds, and a
 * rerun with other parameters is refused rather than mixing two sets. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aptomo/clock.h"
#include "aptomo/config.h"
#include "aptomo/sim.h"
#include "aptomo/volume.h"
#include "approx_scan.h"
#include "cli.h"
#include "dataset.h"

#define MAX_SETS 64
#define PATH_BUF 4096
#define MAX_DIR_LEN 3900 /* -o DIR: room for "/ic-NNNNN.part/approximant.h5.tmp" within PATH_BUF */

static const char HELP[] =
    "usage: aptomo dataset --config FILE --count K -o DIR [--seed S] [--set dotted.key=VALUE]...\n"
    "                      [--angles N] [--range-deg R] [--layers LO:HI] [--pitch-scale LO:HI]\n"
    "                      [--threads T] [--keep-scans]\n"
    "Training pairs for the network from K distinct simulated ICs. Per IC: the scan `aptomo simulate` makes\n"
    "with the IC's own sim.seed, sim.layers and sim.pitch_scale (all derived from --seed; no IC gets the\n"
    "configuration's sim.seed, so its scan stays held out), the Approximant of that scan as `aptomo\n"
    "approximant -o` makes it, and the ground truth on the same grid:\n"
    "  DIR/ic-000/approximant.h5, DIR/ic-000/truth.h5 (/exchange/data float32 [Z,Y,X], voxel size), ...\n"
    "  DIR/dataset.json: the parameters, the command line and the pairs (relative paths, each IC's --set)\n"
    "One JSON line per IC made on stdout (seed, layers, PCC of the Approximant vs the truth, seconds); a\n"
    "progress bar with ETA on stderr when it is a terminal. A rerun into DIR skips the ICs already complete\n"
    "(each is built in DIR/ic-NNN.part and renamed when whole) and refuses a DIR made with other parameters.\n"
    "  --config FILE        aptomod configuration (physics.*, detector.crop, sim.*), required\n"
    "  --set k=v            override a configuration key (YAML flow value), repeatable\n"
    "  --count K            ICs in the set, 1..100000, required (a rerun may raise it)\n"
    "  --seed S             seed of every random choice of the set, 0..2^53-1 (default 1)\n"
    "  --angles N           angles per IC over +-R (default sim.angles)\n"
    "  --range-deg R        largest tilt in degrees, [0, 89.9] (default sim.range_deg)\n"
    "  --layers LO:HI       metal layers, uniform in LO..HI, 1..16 (default sim.layers)\n"
    "  --pitch-scale LO:HI  line pitch scale (sim.pitch_scale), uniform in [LO, HI] in steps of 0.001,\n"
    "                       within [0.25, 4] (default sim.pitch_scale)\n"
    "  --threads T          threads of the simulation and the reconstruction, 0 = one per core (default)\n"
    "  --keep-scans         keep each IC's scan file as DIR/ic-NNN/scan.h5 (large; default: deleted)\n"
    "  -o DIR               output directory, created (its parent must exist), required\n";

typedef struct ds_opts {
    const char *config, *out, *sets[MAX_SETS];
    int n_sets, count, angles, threads, keep_scans, have_layers, have_pitch;
    double range_deg, layers[2], pitch[2];
    uint64_t seed;
} ds_opts;

/* CLI_OK, -1 after --help, or the exit status. */
static int parse(int argc, char **argv, ds_opts *o)
{
    enum { O_CONFIG = 256, O_SET, O_COUNT, O_SEED, O_ANGLES, O_RANGE, O_LAYERS, O_PITCH, O_THREADS, O_KEEP };
    static const struct option opts[] = {
        {"config", required_argument, NULL, O_CONFIG},  {"set", required_argument, NULL, O_SET},
        {"count", required_argument, NULL, O_COUNT},    {"seed", required_argument, NULL, O_SEED},
        {"angles", required_argument, NULL, O_ANGLES},  {"range-deg", required_argument, NULL, O_RANGE},
        {"layers", required_argument, NULL, O_LAYERS},  {"pitch-scale", required_argument, NULL, O_PITCH},
        {"threads", required_argument, NULL, O_THREADS}, {"keep-scans", no_argument, NULL, O_KEEP},
        {"output", required_argument, NULL, 'o'},       {0}};
    memset(o, 0, sizeof *o);
    o->seed = 1;
    o->angles = -1;
    o->range_deg = NAN;
    cli_parser p;
    int c;
    uint64_t u;
    cli_init(&p, "dataset", HELP, "o:", opts, argc, argv);
    while ((c = cli_next(&p)) > 0) {
        switch (c) {
        case 'o': o->out = p.arg; break;
        case O_CONFIG: o->config = p.arg; break;
        case O_SET:
            if (o->n_sets == MAX_SETS)
                return cli_fail(&p, "at most %d --set", MAX_SETS);
            o->sets[o->n_sets++] = p.arg;
            break;
        case O_COUNT: cli_int(&p, 1, DS_MAX_COUNT, &o->count); break;
        case O_SEED:
            if (!cli_uint(&p, 0, DS_SEED_MAX, &u))
                o->seed = u;
            break;
        case O_ANGLES: cli_int(&p, 1, 100000, &o->angles); break;
        case O_RANGE: cli_real(&p, 0, 89.9, 0, &o->range_deg); break;
        case O_LAYERS: o->have_layers = !cli_range(&p, 1, APT_SIM_MAX_LAYERS, 1, o->layers); break;
        case O_PITCH: o->have_pitch = !cli_range(&p, 0.25, 4, 0, o->pitch); break;
        case O_THREADS: cli_int(&p, 0, 256, &o->threads); break;
        case O_KEEP: o->keep_scans = 1; break;
        }
    }
    int rc = cli_done(&p, c, 0, 0, "");
    if (rc != CLI_GO)
        return rc == CLI_OK ? -1 : rc;
    if (!o->config || !o->count || !o->out)
        return cli_fail(&p, "%s is required", !o->config ? "--config FILE" : !o->count ? "--count K" : "-o DIR");
    if (!*o->out || strlen(o->out) > MAX_DIR_LEN)
        return cli_fail(&p, "-o DIR: the path must have 1 to %d characters", MAX_DIR_LEN);
    return CLI_OK;
}

/* a/b into buf[PATH_BUF]; -1 when it does not fit (cannot happen below MAX_DIR_LEN, checked anyway). */
static int join(char *buf, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la + lb + 2 > PATH_BUF)
        return -1;
    memcpy(buf, a, la);
    buf[la] = '/';
    memcpy(buf + la + 1, b, lb + 1);
    return 0;
}

static int set_key(apt_config *cfg, const char *key, const char *fmt, double v, apt_error *err)
{
    char text[64];
    snprintf(text, sizeof text, fmt, v);
    return apt_config_set_value(cfg, key, text, err);
}

/* The configuration every IC starts from (file, --set, --angles, --range-deg) and the set's parameters; the
   ranges default to the configuration's own sim.layers and sim.pitch_scale. */
static int load_base(ds_opts *o, apt_config **cfg, ds_params *dp, char **yaml, apt_error *err)
{
    int rc = apt_config_load(o->config, cfg, err);
    for (int i = 0; !rc && i < o->n_sets; i++)
        rc = apt_config_set(*cfg, o->sets[i], err);
    if (!rc && o->angles > 0)
        rc = set_key(*cfg, "sim.angles", "%.0f", o->angles, err);
    if (!rc && !isnan(o->range_deg))
        rc = set_key(*cfg, "sim.range_deg", "%.17g", o->range_deg, err);
    apt_sim_opts so;
    if (rc || (rc = apt_sim_opts_from_config(*cfg, &so, err)))
        return rc;
    if (!o->have_layers)
        o->layers[0] = o->layers[1] = so.layers;
    if (!o->have_pitch)
        o->pitch[0] = o->pitch[1] = so.pitch_scale;
    if (!(*yaml = apt_config_dump_yaml(*cfg)))
        return apt_err(err, APT_ENOMEM, "out of memory");
    *dp = (ds_params){.seed = o->seed, .held_out = so.seed, .layers = {(int)o->layers[0], (int)o->layers[1]},
                      .pitch = {o->pitch[0], o->pitch[1]}, .angles = so.angles, .range_deg = so.range_deg,
                      .grid = so.grid, .config = *yaml};
    /* the most layers asked for must fit the grid: find out now, not at the first IC that draws them */
    size_t n = (size_t)so.grid.Z * so.grid.Y * so.grid.X;
    float *d = malloc(n * sizeof *d);
    if (!d)
        return apt_err(err, APT_ENOMEM, "out of memory for the %dx%dx%d phantom", so.grid.Z, so.grid.Y, so.grid.X);
    apt_sim_ic_opts io = {dp->layers[1], so.substrate, so.seed, so.energy_keV, dp->pitch[0]};
    rc = apt_sim_phantom_ic(&so.grid, &io, d, NULL, NULL, NULL, err);
    free(d);
    if (rc && o->have_layers)
        apt_err_prefix(err, rc, "--layers %g:%g: ", o->layers[0], o->layers[1]);
    return rc;
}

static int is_file(const char *dir, const char *name)
{
    char p[PATH_BUF];
    struct stat st;
    return !join(p, dir, name) && !stat(p, &st) && S_ISREG(st.st_mode);
}

/* Remove an IC directory this command made (complete or not): only the files it writes, so a user's own file
   inside stops it (rmdir fails) instead of being deleted. Absent: fine. */
static int remove_ic_dir(const char *dir, apt_error *err)
{
    static const char *const names[] = {"scan.h5", "approximant.h5", "approximant.h5.tmp", "truth.h5",
                                        "truth.h5.tmp"};
    char p[PATH_BUF];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!join(p, dir, names[i]))
            unlink(p);
    if (rmdir(dir) != 0 && errno != ENOENT)
        return apt_err(err, APT_EIO, "%s: cannot remove the incomplete IC (%s)", dir, strerror(errno));
    return APT_OK;
}

/* -o DIR: created when missing; an existing DIR holds a manifest of the same parameters or nothing at all. The
   lock (flock, released by the kernel when this process ends) keeps two runs out of one DIR. */
static int open_dir(const char *dir, const ds_params *dp, int *lock_fd, apt_error *err)
{
    struct stat st;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return apt_err(err, APT_EIO, "-o %s: cannot create (%s)", dir, strerror(errno));
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return apt_err(err, APT_EIO, "-o %s: not a directory", dir);
    int manifest = is_file(dir, DS_MANIFEST);
    if (!manifest) { /* a directory of something else must not fill up with ICs */
        DIR *d = opendir(dir);
        if (!d)
            return apt_err(err, APT_EIO, "-o %s: cannot read (%s)", dir, strerror(errno));
        const struct dirent *e;
        int other = 0;
        while (!other && (e = readdir(d)))
            other = strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, ".lock");
        closedir(d);
        if (other)
            return apt_err(err, APT_EINVAL, "-o %s: not empty and no %s in it: not a dataset directory (give a new "
                           "or empty one)", dir, DS_MANIFEST);
    }
    char p[PATH_BUF];
    *lock_fd = join(p, dir, ".lock") ? -1 : open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (*lock_fd < 0)
        return apt_err(err, APT_EIO, "-o %s: cannot write (%s)", dir, strerror(errno));
    if (flock(*lock_fd, LOCK_EX | LOCK_NB) != 0)
        return apt_err(err, APT_EIO, "-o %s: another aptomo dataset is writing it", dir);
    return manifest ? ds_manifest_check(dir, dp, err) : APT_OK;
}

typedef struct ic_progress {
    cli_progress *bar;
    uint64_t base;
} ic_progress;

static void on_sim_angle(void *ctx, int done, int total)
{
    (void)total;
    ic_progress *ip = ctx;
    cli_progress_update(ip->bar, ip->base + (uint64_t)done);
}

typedef struct ic_report {
    double pcc, sim_s, approx_s;
} ic_report;

/* One IC into tmp (a fresh directory): scan, Approximant, truth; the scan deleted unless kept. */
static int make_ic(const apt_config *base, const ds_ic *ic, const char *tmp, int threads, int keep_scans,
                   ic_progress *ip, ic_report *rep, apt_error *err)
{
    apt_config *cfg = NULL;
    apt_scanfile *sf = NULL;
    approx_scan as;
    memset(&as, 0, sizeof as);
    float *probe = NULL;
    double *theta = NULL;
    char scan[PATH_BUF], path[PATH_BUF];
    int rc = join(scan, tmp, "scan.h5") ? apt_err(err, APT_EINVAL, "%s: path too long", tmp)
                                        : apt_config_clone(base, &cfg, err);
    for (int k = 0; !rc && k < 3; k++)
        rc = apt_config_set(cfg, ic->sets[k], err);
    apt_sim_opts so;
    int M, H, W;
    double px, t0 = apt_now();
    if (rc || (rc = apt_sim_opts_from_config(cfg, &so, err)) ||
        (rc = apt_sim_probe_from_config(cfg, so.photons, &probe, &M, &H, &W, &px, err)))
        goto out;
    so.threads = threads;
    if ((rc = apt_sim_write_scan(&so, probe, M, H, W, NULL, NULL, scan, on_sim_angle, ip, err)))
        goto out;
    double t1 = apt_now();
    rep->sim_s = t1 - t0;
    if ((rc = apt_scanfile_open(scan, &sf, err)) || (rc = approx_scan_open(&as, sf, cfg, threads, err)))
        goto out;
    if (!as.truth) {
        rc = apt_err(err, APT_EINVAL, "%s: no ground truth", scan);
        goto out;
    }
    const apt_scan_header *h = apt_scanfile_header(sf);
    if (!(theta = malloc(h->n_angles * sizeof *theta))) {
        rc = apt_err(err, APT_ENOMEM, "out of memory");
        goto out;
    }
    for (uint32_t a = 0; a < h->n_angles; a++) {
        apt_angle_result res;
        uint32_t J;
        rc = approx_scan_add(&as, sf, a, &res, &J, err);
        apt_angle_result_free(&res);
        if (rc)
            goto out;
        theta[a] = h->angles_deg[a];
        cli_progress_update(ip->bar, ip->base + h->n_angles + a + 1);
    }
    join(path, tmp, "approximant.h5");
    if ((rc = approx_scan_write(&as, path, theta, h->n_angles, cfg, err)))
        goto out;
    const apt_grid3 *g = &as.ac.grid;
    apt_volume t = {g->Z, g->Y, g->X, {g->vz, g->vy, g->vx}, as.truth};
    char *yaml = apt_config_dump_yaml(cfg);
    apt_result tr = {&t, NULL, NULL, 0, yaml, NULL, NULL, 0};
    join(path, tmp, "truth.h5");
    rc = apt_result_write(path, &tr, err);
    free(yaml);
    rep->pcc = as.pcc;
    rep->approx_s = apt_now() - t1;
out:
    approx_scan_close(&as);
    if (sf)
        apt_scanfile_close(&sf, NULL);
    if (!keep_scans || rc)
        unlink(scan);
    apt_config_destroy(&cfg);
    free(probe);
    free(theta);
    return rc;
}

static int ic_complete(const char *out, const ds_ic *ic)
{
    char d[PATH_BUF];
    return !join(d, out, ic->name) && is_file(d, "approximant.h5") && is_file(d, "truth.h5");
}

int cmd_dataset(int argc, char **argv)
{
    ds_opts o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc < 0 ? CLI_OK : rc;
    apt_error err = {0};
    apt_config *cfg = NULL;
    ds_params dp;
    ds_ic *ics = NULL;
    json_t *man = NULL;
    char *yaml = NULL, final[PATH_BUF], tmp[PATH_BUF];
    int lock_fd = -1, status = CLI_OK, todo = 0, made = 0;
    if ((rc = load_base(&o, &cfg, &dp, &yaml, &err)) || (rc = open_dir(o.out, &dp, &lock_fd, &err))) {
        fprintf(stderr, "aptomo dataset: %s\n", err.msg);
        status = !cfg ? CLI_USAGE : cli_status(rc, CLI_RUN); /* no config: bad input */
        goto out;
    }
    if (!(ics = calloc((size_t)o.count, sizeof *ics))) {
        fprintf(stderr, "aptomo dataset: out of memory for %d ICs\n", o.count);
        status = CLI_FAIL;
        goto out;
    }
    for (int i = 0; i < o.count; i++) {
        ds_plan_ic(&dp, i, &ics[i]);
        todo += !ic_complete(o.out, &ics[i]);
    }
    /* the manifest first: it claims DIR for these parameters before hours of work */
    if (!(man = ds_manifest(&dp, ics, o.count, o.keep_scans, 0, argc, argv)) ||
        (rc = ds_manifest_write(o.out, man, &err))) {
        fprintf(stderr, "aptomo dataset: %s\n", man ? err.msg : "out of memory");
        status = CLI_FAIL;
        goto out;
    }
    cli_progress bar;
    cli_progress_start(&bar, "dataset", (uint64_t)todo * 2 * (uint64_t)dp.angles);
    cli_progress_update(&bar, 0);
    for (int i = 0; i < o.count; i++) {
        const ds_ic *ic = &ics[i];
        if (ic_complete(o.out, ic))
            continue;
        join(final, o.out, ic->name);
        snprintf(tmp, sizeof tmp, "%.4000s.part", final);
        ic_progress ip = {&bar, (uint64_t)made * 2 * (uint64_t)dp.angles};
        ic_report rep = {NAN, 0, 0};
        double t0 = apt_now();
        /* what an interrupted run left: a half-built .part, or an IC missing files (deleted by hand) */
        if (!(rc = remove_ic_dir(tmp, &err)) && !(rc = remove_ic_dir(final, &err)) && mkdir(tmp, 0777) != 0)
            rc = apt_err(&err, APT_EIO, "%s: cannot create (%s)", tmp, strerror(errno));
        if (!rc)
            rc = make_ic(cfg, ic, tmp, o.threads, o.keep_scans, &ip, &rep, &err);
        if (!rc && rename(tmp, final) != 0)
            rc = apt_err(&err, APT_EIO, "rename %s -> %s failed (%s)", tmp, final, strerror(errno));
        if (rc) {
            cli_progress_clear(&bar);
            fprintf(stderr, "aptomo dataset: %s: %s\n", ic->name, err.msg);
            remove_ic_dir(tmp, NULL);
            status = cli_status(rc, CLI_RUN); /* config values, a manifest of other parameters: input */
            goto out;
        }
        made++;
        cli_progress_clear(&bar); /* the JSON line must not land inside the bar */
        printf("{\"ic\":%d,\"dir\":\"%s\",\"seed\":%llu,\"layers\":%d,\"pitch_scale\":%.15g,\"pcc_vs_truth\":%.4f,"
               "\"seconds\":%.3f,\"simulate_seconds\":%.3f,\"approximant_seconds\":%.3f}\n",
               i, ic->name, (unsigned long long)ic->seed, ic->layers, ic->pitch_scale, rep.pcc, apt_now() - t0,
               rep.sim_s, rep.approx_s);
        fflush(stdout);
        cli_progress_update(&bar, (uint64_t)made * 2 * (uint64_t)dp.angles);
    }
    cli_progress_end(&bar);
    json_decref(man);
    if (!(man = ds_manifest(&dp, ics, o.count, o.keep_scans, 1, argc, argv)) ||
        (rc = ds_manifest_write(o.out, man, &err))) {
        fprintf(stderr, "aptomo dataset: %s\n", man ? err.msg : "out of memory");
        status = CLI_FAIL;
        goto out;
    }
    fprintf(stderr, "aptomo dataset: %s: %d pairs (%d made, %d already complete), grid %dx%dx%d, %d angles\n",
            o.out, o.count, made, o.count - made, dp.grid.Z, dp.grid.Y, dp.grid.X, dp.angles);
out:
    if (lock_fd >= 0)
        close(lock_fd);
    json_decref(man);
    free(ics);
    free(yaml);
    apt_config_destroy(&cfg);
    return status;
}
