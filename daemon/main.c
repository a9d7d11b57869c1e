/* main.c - aptomod: the live reconstruction daemon. Reads the YAML config (+ --set overrides), starts the core,
 * tells systemd it is ready (Type=notify) and pings the watchdog from the control loop, drains on SIGTERM/SIGINT
 * and exits 0. Exit 2 = bad configuration (message names file:line), 1 = runtime failure (e.g. a bind failed).
 * SIGHUP re-reads the same file with the same overrides through the same checks; the signal handler only sets a
 * flag, the reload itself runs on the control thread (the loop's tick callback), so no stage sees a half-applied
 * change. A file that fails is logged and the daemon keeps its running settings. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "aptomo/backend.h"
#include "aptomo/clock.h"
#include "aptomo/config.h"
#include "aptomo/gpu.h"
#include "aptomo/log.h"
#include "aptomod/aptd.h"

/* Where the compute will run, said once at start (the backend rule logs only fallbacks after this). */
static void log_compute(int backend)
{
    apt_error e = {0};
    char name[128] = "";
    if (backend != APT_BACKEND_CPU && apt_gpu_count(&e) > 0 && !apt_gpu_name(name, sizeof name, NULL))
        apt_info("compute.backend %s: on the GPU (%s) where a part has a CUDA twin (status backends)",
                 apt_backend_name((apt_backend)backend), name);
    else
        apt_info("compute.backend %s: on the cpu%s%s%s", apt_backend_name((apt_backend)backend),
                 backend == APT_BACKEND_CPU ? "" : " (", backend == APT_BACKEND_CPU ? "" : e.msg,
                 backend == APT_BACKEND_CPU ? "" : ")");
}

static volatile int stop_flag = 0;
static volatile sig_atomic_t reload_flag = 0;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void on_hup(int sig)
{
    (void)sig;
    reload_flag = 1;
}

/* How the configuration was given: the same file, --set overrides and --log-level make every load. */
typedef struct config_src {
    const char *path, *level;
    const char **sets;
    int n_sets;
} config_src;

/* Load, override and check: 0 with *cfg and *s filled, or the code with err set (*cfg NULL, s freed). */
static int config_read(const config_src *src, apt_config **cfg, aptd_settings *s, apt_error *err)
{
    *cfg = NULL;
    memset(s, 0, sizeof *s);
    int rc = apt_config_load(src->path, cfg, err);
    for (int i = 0; !rc && i < src->n_sets; i++)
        rc = apt_config_set(*cfg, src->sets[i], err);
    if (!rc && src->level && (rc = apt_config_set_value(*cfg, "log.level", src->level, err)))
        apt_err_prefix(err, rc, "--log-level: ");
    /* the same checks for --check, --print-config, the start and a reload: what passes here starts */
    if (!rc)
        rc = aptd_settings_load(*cfg, s, err);
    if (rc) {
        aptd_settings_free(s);
        apt_config_destroy(cfg);
    }
    return rc;
}

typedef struct tick_state {
    uint64_t watchdog_usec;
    double last_ping;
    const config_src *src;
    const apt_config *cfg0;           /* what the daemon started with */
    aptd *d;
} tick_state;

static void reload(tick_state *t)
{
    apt_info("SIGHUP: re-reading %s", t->src->path);
    sd_notify(0, "RELOADING=1\nSTATUS=reloading the configuration");
    apt_error err = {0};
    apt_config *cfg1 = NULL;
    aptd_settings ns;
    if (config_read(t->src, &cfg1, &ns, &err) != APT_OK)
        apt_error_log("reload refused, the running settings stay: %s", err.msg);
    else if (aptd_reload(t->d, t->cfg0, cfg1, &ns, &err) != APT_OK)
        apt_error_log("reload refused, the running settings stay: %s", err.msg);
    aptd_settings_free(&ns);
    apt_config_destroy(&cfg1);
    sd_notify(0, "READY=1\nSTATUS=receiving");
}

/* Called about every 100 ms from the control loop: the systemd watchdog, and a pending SIGHUP. */
static void tick(void *arg)
{
    tick_state *t = arg;
    double now = apt_now();
    if (t->watchdog_usec && now - t->last_ping >= (double)t->watchdog_usec / 2e6) {
        sd_notify(0, "WATCHDOG=1");
        t->last_ping = now;
    }
    if (reload_flag) {
        reload_flag = 0;
        reload(t);
    }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: aptomod --config FILE [--set dotted.key=VALUE]... [--log-level debug|info|warn|error]\n"
               "               [--print-config] [--check] [--version] [--help]\n"
               "  -c, --config FILE      the YAML configuration (reference: aptomod.yaml, every key documented)\n"
               "      --set KEY=VALUE    override one key (VALUE is YAML flow: 31, true, [a, b]); repeatable\n"
               "      --log-level L      least severe level logged to stderr (overrides log.level)\n"
               "      --check            make every check that start-up makes, then exit: 0 = it would start,\n"
               "                         2 = refused (the message names FILE:LINE:COLUMN of the key)\n"
               "      --print-config     check, then print the effective configuration (YAML) and exit\n"
               "      --version          print the version and exit\n"
               "Options take --opt VALUE or --opt=VALUE. Exit: 0 ok, 2 bad usage or configuration, 1 runtime\n"
               "failure (e.g. a port in use). Signals: SIGTERM/SIGINT drain and exit; SIGHUP re-reads FILE (with\n"
               "the same --set overrides) and applies the live-changeable keys and the CURVE client lists.\n");
}

static int bad_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "aptomod: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'aptomod --help' for usage.\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *config = NULL, *level = NULL;
    const char *sets[256];
    int n_sets = 0, print = 0, check = 0;
    enum { OPT_SET = 256, OPT_LOG, OPT_PRINT, OPT_CHECK, OPT_VERSION };
    static const struct option longs[] = {
        {"config", required_argument, NULL, 'c'},   {"set", required_argument, NULL, OPT_SET},
        {"log-level", required_argument, NULL, OPT_LOG}, {"print-config", no_argument, NULL, OPT_PRINT},
        {"check", no_argument, NULL, OPT_CHECK},     {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":c:h", longs, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case OPT_SET:
            if (n_sets == 256)
                return bad_usage("more than %s --set options", "256");
            sets[n_sets++] = optarg;
            break;
        case OPT_LOG:
            level = optarg;
            break;
        case OPT_PRINT:
            print = 1;
            break;
        case OPT_CHECK:
            check = 1;
            break;
        case OPT_VERSION:
            printf("aptomod %s\n", APTOMO_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        case ':':
            return bad_usage("option '%s' needs a value", argv[optind - 1]);
        default:
            return bad_usage("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return bad_usage("unexpected argument '%s' (the configuration is given with --config FILE)", argv[optind]);
    if (!config) {
        fprintf(stderr, "aptomod: --config FILE is required (reference: configs/aptomod.yaml)\n");
        return 2;
    }
    apt_error err = {0};
    apt_config *cfg = NULL;
    aptd_settings s;
    config_src src = {config, level, sets, n_sets};
    if (config_read(&src, &cfg, &s, &err) != APT_OK) {
        fprintf(stderr, "aptomod: %s\n", err.msg);
        return 2;
    }
    if (print) {
        char *yaml = apt_config_dump_yaml(cfg);
        fputs(yaml ? yaml : "", stdout);
        free(yaml);
    }
    if (print || check) {
        if (check && !print)
            printf("%s: ok\n", config);
        aptd_settings_free(&s);
        apt_config_destroy(&cfg);
        return 0;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    apt_log_set_level(s.log_level);
    apt_info("aptomod %s starting with %s", APTOMO_VERSION, config);
    log_compute(s.backend);
    aptd *d = NULL;
    if (aptd_start(&s, &d, &err) != APT_OK) {
        apt_error_log("start failed: %s", err.msg);
        sd_notifyf(0, "STATUS=start failed: %s", err.msg);
        aptd_settings_free(&s);
        apt_config_destroy(&cfg);
        return 1;
    }
    tick_state t = {0, 0, &src, cfg, d};
    if (sd_watchdog_enabled(0, &t.watchdog_usec) <= 0)
        t.watchdog_usec = 0;
    sd_notify(0, "READY=1\nSTATUS=receiving");
    apt_info("ready");
    aptd_run(d, &stop_flag, tick, &t);
    sd_notify(0, "STOPPING=1\nSTATUS=draining");
    apt_info("draining");
    aptd_stop(&d);
    aptd_settings_free(&s);
    apt_config_destroy(&cfg);
    return 0;
}
