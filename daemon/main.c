/* main.c - aptomod: the live reconstruction daemon. Reads the YAML config (+ --set overrides), starts the core,
 * tells systemd it is ready (Type=notify) and pings the watchdog from the control loop, drains on SIGTERM/SIGINT
 * and exits 0. Exit 2 = bad configuration (message names file:line), 1 = runtime failure (e.g. a bind failed). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "aptd.h"
#include "aptomo/clock.h"
#include "aptomo/config.h"
#include "aptomo/log.h"

static volatile int stop_flag = 0;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

typedef struct watchdog {
    uint64_t usec;
    double last;
} watchdog;

static void watchdog_ping(void *arg)
{
    watchdog *w = arg;
    double now = apt_now();
    if (w->usec && now - w->last >= (double)w->usec / 2e6) {
        sd_notify(0, "WATCHDOG=1");
        w->last = now;
    }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: aptomod --config FILE [--set dotted.key=VALUE]... [--log-level debug|info|warn|error]\n"
               "               [--print-config] [--check]\n"
               "  --print-config  print the effective configuration (YAML) and exit\n"
               "  --check         validate the configuration and exit\n");
}

int main(int argc, char **argv)
{
    const char *config = NULL, *level = NULL;
    const char *sets[256];
    int n_sets = 0, print = 0, check = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "--config") || !strcmp(a, "-c")) && i + 1 < argc)
            config = argv[++i];
        else if (!strcmp(a, "--set") && i + 1 < argc && n_sets < 256)
            sets[n_sets++] = argv[++i];
        else if (!strcmp(a, "--log-level") && i + 1 < argc)
            level = argv[++i];
        else if (!strcmp(a, "--print-config"))
            print = 1;
        else if (!strcmp(a, "--check"))
            check = 1;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "aptomod: unknown or incomplete argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!config) {
        fprintf(stderr, "aptomod: --config FILE is required (reference: configs/aptomod.yaml)\n");
        return 2;
    }
    apt_error err = {0};
    apt_config *cfg = NULL;
    if (apt_config_load(config, &cfg, &err) != APT_OK) {
        fprintf(stderr, "aptomod: %s\n", err.msg);
        return 2;
    }
    for (int i = 0; i < n_sets; i++)
        if (apt_config_set(cfg, sets[i], &err) != APT_OK) {
            fprintf(stderr, "aptomod: %s\n", err.msg);
            apt_config_destroy(&cfg);
            return 2;
        }
    if (level && apt_config_set_value(cfg, "log.level", level, &err) != APT_OK) {
        fprintf(stderr, "aptomod: --log-level: %s\n", err.msg);
        apt_config_destroy(&cfg);
        return 2;
    }
    aptd_settings s;
    if (aptd_settings_from_config(cfg, &s, &err) != APT_OK) {
        fprintf(stderr, "aptomod: %s: %s\n", config, err.msg);
        aptd_settings_free(&s);
        apt_config_destroy(&cfg);
        return 2;
    }
    if (print) {
        char *yaml = apt_config_dump_yaml(cfg);
        fputs(yaml ? yaml : "", stdout);
        free(yaml);
    }
    apt_config_destroy(&cfg);
    if (print || check) {
        aptd_settings_free(&s);
        return 0;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    apt_log_set_level(s.log_level);
    apt_info("aptomod %s starting with %s", APTOMO_VERSION, config);
    aptd *d = NULL;
    if (aptd_start(&s, &d, &err) != APT_OK) {
        apt_error_log("start failed: %s", err.msg);
        sd_notifyf(0, "STATUS=start failed: %s", err.msg);
        aptd_settings_free(&s);
        return 1;
    }
    watchdog w = {0, 0};
    if (sd_watchdog_enabled(0, &w.usec) <= 0)
        w.usec = 0;
    sd_notify(0, "READY=1\nSTATUS=receiving");
    apt_info("ready");
    aptd_run(d, &stop_flag, watchdog_ping, &w);
    sd_notify(0, "STOPPING=1\nSTATUS=draining");
    apt_info("draining");
    aptd_stop(&d);
    aptd_settings_free(&s);
    return 0;
}
