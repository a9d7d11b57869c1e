/* test_config.c - the YAML configuration loader: schema defaults against the documented values, the reference and
 * demo files (configs/), every error with its exact FILE:LINE:COLUMN and key, --set overrides (lists, the
 * physics.probe union, all-or-nothing failures), bounds, accessor misuse, and dump -> reload round trips.
 * configs/aptomod.yaml is walked here with libyaml directly, so it cannot miss or invent a key unnoticed. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "apt_test.h"
#include "aptomo/config.h"

static const char *src_dir(void)
{
    const char *s = getenv("APTOMO_SRC");
    return s && *s ? s : "..";
}

static void src_path(char *buf, size_t cap, const char *rel)
{
    snprintf(buf, cap, "%s/%s", src_dir(), rel);
}

/* A value as text through the public accessors: "128", "8.8", "[a,b]", "file:p.h5", "mapping". */
static void fmt_value(const apt_config *c, const apt_config_key *k, char *buf, size_t cap)
{
    apt_error e = {0};
    size_t used = 0;
    switch (k->type) {
    case APT_CFG_STR:
    case APT_CFG_ENUM: snprintf(buf, cap, "%s", apt_config_str(c, k->key, &e)); break;
    case APT_CFG_INT: snprintf(buf, cap, "%lld", (long long)apt_config_int(c, k->key, &e)); break;
    case APT_CFG_FLOAT: snprintf(buf, cap, "%g", apt_config_float(c, k->key, &e)); break;
    case APT_CFG_BOOL: snprintf(buf, cap, "%s", apt_config_bool(c, k->key, &e) ? "true" : "false"); break;
    case APT_CFG_STR_LIST:
    case APT_CFG_FLOAT_LIST:
        used = (size_t)snprintf(buf, cap, "[");
        for (size_t i = 0; i < apt_config_list_len(c, k->key, &e) && used < cap; i++) {
            if (k->type == APT_CFG_STR_LIST)
                used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? "," : "",
                                         apt_config_list_str(c, k->key, i, &e));
            else
                used += (size_t)snprintf(buf + used, cap - used, "%s%g", i ? "," : "",
                                         apt_config_list_float(c, k->key, i, &e));
        }
        if (used < cap)
            snprintf(buf + used, cap - used, "]");
        break;
    case APT_CFG_UNION:
        if (apt_config_union_form(c, k->key, &e) == APT_CFG_FORM_STRING)
            snprintf(buf, cap, "file:%s", apt_config_str(c, k->key, &e));
        else
            snprintf(buf, cap, "mapping");
        break;
    }
    CHECK_MSG(e.code == 0, "%s: %s", k->key, e.msg);
}

/* The defaults as the design and the issue state them, typed here independently of config_schema.c. */
static const struct {
    const char *key, *want;
} golden_defaults[] = {
    {"detector.endpoints", "[tcp://127.0.0.1:9999]"},
    {"detector.protocol", "auto"},
    {"detector.channel", ""},
    {"detector.crop", "128"},
    {"detector.beam_center", "[]"},
    {"detector.rcvhwm", "200000"},
    {"detector.series_timeout_s", "30"},
    {"detector.max_frames_per_series", "1000000"},
    {"detector.max_frame_pixels", "16777216"},
    {"detector.max_message_bytes", "67108864"},
    {"ingest.decode_threads", "0"},
    {"ingest.queue_frames", "65536"},
    {"metadata.endpoint", ""},
    {"metadata.bind", "false"},
    {"metadata.grace_s", "5"},
    {"results.endpoint", "tcp://*:9998"},
    {"results.sndhwm", "1000"},
    {"results.status_period_s", "1"},
    {"results.curve_secret_key", ""},
    {"results.curve_clients", ""},
    {"control.endpoint", "tcp://127.0.0.1:9997"},
    {"control.curve_secret_key", ""},
    {"control.curve_clients", ""},
    {"web.port", "0"},
    {"web.address", "127.0.0.1"},
    {"web.max_clients", "16"},
    {"web.stream_events", "512"},
    {"web.timeout_s", "30"},
    {"compute.backend", "auto"},
    {"physics.energy_keV", "8.8"},
    {"physics.detector_distance_m", "1.92"},
    {"physics.pixel_size_m", "7.5e-05"},
    {"physics.slices", "5"},
    {"physics.modes", "12"},
    {"physics.iterations", "2"},
    {"physics.reconstruct", "true"},
    {"physics.batches", "16"},
    {"physics.probe", "mapping"},
    {"physics.probe.model", "zoneplate"},
    {"physics.probe.zp_diameter_m", "0.00016"},
    {"physics.probe.outer_zone_m", "5e-08"},
    {"physics.probe.defocus_m", "0.0001"},
    {"physics.probe.central_stop", "0.5"},
    {"physics.probe.coherence", "0.3"},
    {"tomo.n_star", "29"},
    {"tomo.publish_every", "4"},
    {"tomo.nz", "0"},
    {"tomo.reference", ""},
    {"tomo.converge_pcc", "0.999"},
    {"tomo.converge_updates", "3"},
    {"tomo.grid", "[280,128,128]"},
    {"tomo.voxel_size_m", "[1.4e-08,2.8e-08,2.8e-08]"},
    {"tomo.baseline", "fbp"},
    {"model.weights", ""},
    {"model.batch", "1"},
    {"storage.dir", "/var/lib/aptomo"},
    {"storage.queue_memory_mb", "4096"},
    {"storage.spool_frames", "false"},
    {"storage.spool_min_free_mb", "512"},
    {"sim.grid", "[280,128,128]"},
    {"sim.voxel_size_m", "[1.4e-08,1.4e-08,1.4e-08]"},
    {"sim.angles", "37"},
    {"sim.range_deg", "70.4"},
    {"sim.step_m", "1e-07"},
    {"sim.jitter_m", "1.5e-08"},
    {"sim.photons_per_frame", "1e+06"},
    {"sim.dtype", "uint16"},
    {"sim.seed", "1"},
    {"sim.layers", "6"},
    {"sim.substrate", "true"},
    {"sim.pitch_scale", "1"},
    {"log.level", "info"},
};
#define N_GOLDEN (sizeof golden_defaults / sizeof golden_defaults[0])

static bool has_prefix_path(const char *key, const char *prefix, size_t pl)
{
    return !strncmp(key, prefix, pl) && key[pl] == '.';
}

/* Table invariants the loader and the dump rely on: unique keys, contiguous sections, unions before their keys. */
static void test_schema(void)
{
    size_t n = apt_config_key_count();
    CHECK(n == N_GOLDEN);
    CHECK(apt_config_key_at(n) == NULL);
    for (size_t i = 0; i < n; i++) {
        const apt_config_key *k = apt_config_key_at(i);
        CHECK_MSG(k->doc && *k->doc && k->def && *k->def, "%s: doc/default", k->key);
        CHECK_MSG(apt_config_key_find(k->key) == k, "%s: not unique", k->key);
        CHECK_MSG(k->type != APT_CFG_ENUM || strstr(k->choices, k->def), "%s: default not a choice", k->key);
        for (size_t j = 0; j + 1 < i; j++) { /* every shared section of j and i is shared by all keys between */
            const char *a = apt_config_key_at(j)->key;
            for (const char *d = strchr(a, '.'); d; d = strchr(d + 1, '.'))
                if (has_prefix_path(k->key, a, (size_t)(d - a)))
                    for (size_t m = j + 1; m < i; m++)
                        CHECK_MSG(has_prefix_path(apt_config_key_at(m)->key, a, (size_t)(d - a)),
                                  "section of %s is split by %s", k->key, apt_config_key_at(m)->key);
        }
        if (k->type == APT_CFG_UNION) {
            size_t kl = strlen(k->key);
            CHECK_MSG(i + 1 < n && has_prefix_path(apt_config_key_at(i + 1)->key, k->key, kl),
                      "union %s must precede its keys", k->key);
            for (size_t j = 0; j < i; j++)
                CHECK(!has_prefix_path(apt_config_key_at(j)->key, k->key, kl));
        }
    }
    for (size_t g = 0; g < N_GOLDEN; g++)
        CHECK_MSG(apt_config_key_find(golden_defaults[g].key), "%s missing from the schema", golden_defaults[g].key);
}

static void test_defaults(void)
{
    apt_config *c = NULL;
    apt_error e = {0};
    CHECK_OK(apt_config_load(NULL, &c, &e), &e);
    if (!c)
        return;
    char got[512];
    for (size_t g = 0; g < N_GOLDEN; g++) {
        const apt_config_key *k = apt_config_key_find(golden_defaults[g].key);
        if (!k)
            continue;
        fmt_value(c, k, got, sizeof got);
        CHECK_MSG(!strcmp(got, golden_defaults[g].want), "%s: default %s, want %s", k->key, got,
                  golden_defaults[g].want);
        CHECK(!strcmp(apt_config_source(c, k->key), "default"));
        CHECK(!apt_config_is_set(c, k->key));
    }
    CHECK(apt_config_enum(c, "detector.protocol", NULL) == 0);
    CHECK(apt_config_enum(c, "log.level", NULL) == 1);
    CHECK(apt_config_float(c, "physics.pixel_size_m", NULL) == 75e-6);
    CHECK(apt_config_float(c, "physics.probe.outer_zone_m", NULL) == 50e-9);
    apt_config_destroy(&c);
    CHECK(c == NULL);
    apt_config_destroy(&c); /* NULL-safe */
}

/* Leaves of a YAML file as dotted paths, read with libyaml alone (not through the loader). */
static void collect(yaml_document_t *doc, yaml_node_t *node, const char *prefix, char (*out)[128], size_t *n,
                    size_t cap)
{
    if (node->type != YAML_MAPPING_NODE) {
        if (*n < cap)
            snprintf(out[(*n)++], 128, "%s", prefix);
        return;
    }
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top; p++) {
        char path[128];
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "",
                 (char *)yaml_document_get_node(doc, p->key)->data.scalar.value);
        collect(doc, yaml_document_get_node(doc, p->value), path, out, n, cap);
    }
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = calloc(1, 1 << 20);
    *len = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    return buf;
}

/* The text of line `line` (1-based), trimmed of leading blanks. */
static void line_of(const char *text, size_t line, char *out, size_t cap)
{
    const char *p = text;
    for (size_t l = 1; l < line && p; l++)
        if ((p = strchr(p, '\n')))
            p++;
    out[0] = '\0';
    if (!p)
        return;
    p += strspn(p, " ");
    snprintf(out, cap, "%.*s", (int)strcspn(p, "\n"), p);
}

static void test_reference(void)
{
    char path[1024];
    src_path(path, sizeof path, "configs/aptomod.yaml");
    apt_config *ref = NULL, *def = NULL;
    apt_error e = {0};
    CHECK_OK(apt_config_load(path, &ref, &e), &e);
    CHECK_OK(apt_config_load(NULL, &def, &e), &e);
    if (!ref || !def)
        return;
    const char *diff = apt_config_first_diff(ref, def);
    CHECK_MSG(diff == NULL, "aptomod.yaml differs from the schema default at %s", diff);

    /* every key is written in the file (not defaulted), with a comment line right above it */
    size_t len = 0;
    char *text = read_all(path, &len);
    CHECK(text != NULL);
    for (size_t i = 0; text && i < apt_config_key_count(); i++) {
        const char *key = apt_config_key_at(i)->key, *src = apt_config_source(ref, key);
        size_t pl = strlen(path);
        CHECK_MSG(!strncmp(src, path, pl) && src[pl] == ':', "%s not in aptomod.yaml (source %s)", key, src);
        size_t line = strtoul(src + pl + 1, NULL, 10);
        char above[256], here[256];
        line_of(text, line - 1, above, sizeof above);
        line_of(text, line, here, sizeof here);
        const char *leaf = strrchr(key, '.') + 1;
        CHECK_MSG(!strncmp(here, leaf, strlen(leaf)) && here[strlen(leaf)] == ':', "%s: line %zu is '%s'", key,
                  line, here);
        CHECK_MSG(above[0] == '#', "%s (line %zu) has no comment above it", key, line);
    }

    /* the key set, read independently: leaves == schema keys (unions appear as the mapping above their keys) */
    yaml_parser_t p;
    yaml_document_t doc;
    static char leaves[256][128];
    size_t nl = 0;
    CHECK(yaml_parser_initialize(&p));
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    CHECK(yaml_parser_load(&p, &doc));
    collect(&doc, yaml_document_get_root_node(&doc), "", leaves, &nl, 256);
    yaml_document_delete(&doc);
    yaml_parser_delete(&p);
    size_t nschema = 0;
    for (size_t i = 0; i < apt_config_key_count(); i++) {
        const apt_config_key *k = apt_config_key_at(i);
        if (k->type == APT_CFG_UNION)
            continue;
        nschema++;
        bool found = false;
        for (size_t j = 0; j < nl; j++)
            found |= !strcmp(leaves[j], k->key);
        CHECK_MSG(found, "schema key %s missing from configs/aptomod.yaml", k->key);
    }
    for (size_t j = 0; j < nl; j++)
        CHECK_MSG(apt_config_key_find(leaves[j]), "aptomod.yaml has %s, which is not in the schema", leaves[j]);
    CHECK(nl == nschema);
    free(text);
    apt_config_destroy(&ref);
    apt_config_destroy(&def);
}

/* Every file a shipped config names exists in the repo (storage.dir is created by the daemon). */
static void check_named_files(const apt_config *c, const char *which)
{
    char p[1024];
    const char *w = apt_config_str(c, "model.weights", NULL);
    if (*w) {
        src_path(p, sizeof p, w);
        FILE *f = fopen(w[0] == '/' ? w : p, "rb");
        CHECK_MSG(f != NULL, "%s: model.weights %s does not ship", which, w);
        if (f)
            fclose(f);
    }
    if (apt_config_union_form(c, "physics.probe", NULL) == APT_CFG_FORM_STRING) {
        const char *pr = apt_config_str(c, "physics.probe", NULL);
        src_path(p, sizeof p, pr);
        FILE *f = fopen(pr[0] == '/' ? pr : p, "rb");
        CHECK_MSG(f != NULL, "%s: physics.probe %s does not ship", which, pr);
        if (f)
            fclose(f);
    }
}

static void test_demo(void)
{
    static const char *const demo_keys[] = {"detector.endpoints", "detector.crop", "results.endpoint",
                                            "control.endpoint", "physics.modes", "tomo.n_star",
                                            "tomo.publish_every", "storage.dir", "storage.spool_frames",
                                            "physics.detector_distance_m", "physics.probe",
                                            "physics.probe.defocus_m", "tomo.grid", "tomo.voxel_size_m", "sim.grid",
                                            "sim.voxel_size_m", "sim.angles", "sim.range_deg", "sim.layers",
                                            "model.weights", "web.port", NULL};
    char path[1024];
    src_path(path, sizeof path, "configs/demo.yaml");
    apt_config *c = NULL, *def = NULL, *ref = NULL;
    apt_error e = {0};
    CHECK_OK(apt_config_load(path, &c, &e), &e);
    CHECK_OK(apt_config_load(NULL, &def, &e), &e);
    if (!c || !def)
        return;
    CHECK(apt_config_list_len(c, "detector.endpoints", NULL) == 1);
    CHECK(!strcmp(apt_config_list_str(c, "detector.endpoints", 0, NULL), "tcp://127.0.0.1:19999"));
    CHECK(!strcmp(apt_config_str(c, "results.endpoint", NULL), "tcp://127.0.0.1:19998"));
    CHECK(!strcmp(apt_config_str(c, "control.endpoint", NULL), "tcp://127.0.0.1:19997"));
    CHECK(apt_config_int(c, "detector.crop", NULL) == 64);
    CHECK(!strcmp(apt_config_str(c, "storage.dir", NULL), "out/demo"));
    CHECK(!strcmp(apt_config_str(c, "model.weights", NULL), "models/demo.safetensors"));
    CHECK(apt_config_bool(c, "storage.spool_frames", NULL));
    CHECK(apt_config_int(c, "physics.modes", NULL) == 3);
    CHECK(apt_config_int(c, "tomo.n_star", NULL) == 8);
    CHECK(apt_config_int(c, "tomo.publish_every", NULL) == 2);
    /* exactly those keys differ from the defaults, and only they come from the file */
    for (size_t i = 0; i < apt_config_key_count(); i++) {
        const char *key = apt_config_key_at(i)->key;
        bool listed = false;
        for (size_t j = 0; demo_keys[j]; j++)
            listed |= !strcmp(demo_keys[j], key);
        if (apt_config_key_at(i)->type != APT_CFG_UNION) /* a union is set by setting a key below it */
            CHECK_MSG(apt_config_equal(c, def, key) == !listed, "demo.yaml: %s", key);
        CHECK_MSG(apt_config_is_set(c, key) == listed, "demo.yaml: source of %s is %s", key,
                  apt_config_source(c, key));
    }
    char want[1100], line[256];
    int n_star_line = 0; /* the line of "  n_star:" in the file, found independently of the loader */
    FILE *df = fopen(path, "r");
    for (int ln = 1; df && fgets(line, sizeof line, df); ln++)
        if (!strncmp(line, "  n_star:", 9))
            n_star_line = ln;
    if (df)
        fclose(df);
    snprintf(want, sizeof want, "%s:%d:3", path, n_star_line); /* line:column of the key itself */
    CHECK_MSG(!strcmp(apt_config_source(c, "tomo.n_star"), want), "source %s", apt_config_source(c, "tomo.n_star"));
    check_named_files(c, "demo.yaml");
    src_path(path, sizeof path, "configs/aptomod.yaml");
    CHECK_OK(apt_config_load(path, &ref, &e), &e);
    if (ref)
        check_named_files(ref, "aptomod.yaml");
    apt_config_destroy(&c);
    apt_config_destroy(&def);
    apt_config_destroy(&ref);
}

/* Each bad file is refused with exactly this message after its path (a prefix: hints may follow). */
static void test_errors(void)
{
    static const struct {
        const char *file, *msg;
    } cases[] = {
        {"unknown_key.yaml", ":3:3: key 'detector.crpo': unknown key (detector has: endpoints, protocol,"},
        {"wrong_type.yaml", ":3:11: key 'tomo.n_star': expected int in [1, 100000], got string 'many'"},
        {"out_of_range.yaml", ":3:9: key 'detector.crop': expected int in [8, 4096], got 4"},
        {"duplicate_key.yaml", ":4:3: key 'physics.modes': duplicate key (first at line 2)"},
        {"bad_yaml.yaml", ":3:19: YAML syntax error: mapping values are not allowed in this context"},
        {"list_for_scalar.yaml", ":2:11: key 'tomo.n_star': expected int in [1, 100000], got a sequence"},
        {"probe_number.yaml", ":3:10: key 'physics.probe': expected file path (string) or mapping of {model, "
                              "zp_diameter_m, outer_zone_m, defocus_m, central_stop, coherence}, got int 5"},
        {"top_sequence.yaml", ":1:1: expected a mapping of sections (detector, ingest, metadata,"},
        {"probe_coherence_zero.yaml", ":4:16: key 'physics.probe.coherence': expected float in (0, 1], got 0"},
        {"probe_unknown_subkey.yaml", ":2:28: key 'physics.probe.focus': unknown key (physics.probe has: model,"},
        {"list_entry_type.yaml",
         ":2:40: key 'detector.endpoints[1]': expected non-empty string, got int 5 (quote it to make it a string)"},
        {"bool_yes.yaml", ":2:17: key 'storage.spool_frames': expected bool (true or false), got string 'yes'"},
        {"dotted_in_file.yaml", ":1:1: key 'detector.crop': dotted keys are for --set"},
        {"enum_bad.yaml", ":2:10: key 'log.level': expected one of debug|info|warn|error, got string 'verbose'"},
        {"beam_center_len.yaml", ":2:16: key 'detector.beam_center': expected list of 0 or 2 numbers, got 3 entries"},
        {"two_documents.yaml", ":4:1: only one YAML document is allowed"},
        {"string_as_number.yaml", ":2:13: key 'metadata.endpoint': expected string, got int 9996"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[1024], want[1400];
        snprintf(path, sizeof path, "%s/tests/data/config/%s", src_dir(), cases[i].file);
        snprintf(want, sizeof want, "%s%s", path, cases[i].msg);
        apt_config *c = (apt_config *)&c; /* must come back NULL */
        apt_error e = {0};
        int rc = apt_config_load(path, &c, &e);
        CHECK_MSG(rc == APT_EINVAL && e.code == APT_EINVAL && c == NULL, "%s: rc=%d", cases[i].file, rc);
        CHECK_MSG(!strncmp(e.msg, want, strlen(want)), "%s:\n  got  %s\n  want %s", cases[i].file, e.msg, want);
    }

    apt_config *c = NULL;
    apt_error e = {0};
    CHECK(apt_config_load("/nonexistent/aptomod.yaml", &c, &e) == APT_EIO && c == NULL);
    CHECK(strstr(e.msg, "/nonexistent/aptomod.yaml: ") == e.msg);

    /* bounds: a file over 1 MiB is refused before parsing; strings, lists and embedded NULs in memory */
    FILE *f = fopen("test_config_big.yaml", "wb");
    CHECK(f != NULL);
    if (f) {
        for (long sz = 0; sz <= (1 << 20); sz += 30)
            fputs("# padding padding padding pad\n", f);
        fclose(f);
        CHECK(apt_config_load("test_config_big.yaml", &c, &e) == APT_ERANGE && c == NULL);
        CHECK(strstr(e.msg, "larger than the 1048576-byte bound") != NULL);
        remove("test_config_big.yaml");
    }
    static char big[8192], xs[5001];
    memset(xs, 'x', 5000);
    int n = snprintf(big, sizeof big, "storage:\n  dir: \"%s\"\n", xs);
    CHECK(apt_config_load_string(big, (size_t)n, "long.yaml", &c, &e) == APT_EINVAL && c == NULL);
    CHECK_MSG(!strcmp(e.msg, "long.yaml:2:8: key 'storage.dir': string of 5000 bytes is longer than 4096"), "%s",
              e.msg);
    n = snprintf(big, sizeof big, "detector:\n  beam_center: [");
    for (int i = 0; i < 2000; i++)
        n += snprintf(big + n, sizeof big - (size_t)n, "%d,", i % 10);
    n += snprintf(big + n, sizeof big - (size_t)n, "0]\n");
    CHECK(apt_config_load_string(big, (size_t)n, "list.yaml", &c, &e) == APT_EINVAL && c == NULL);
    CHECK_MSG(strstr(e.msg, "list.yaml:2:16: key 'detector.beam_center': expected list of 0 or 2 numbers, got "
                            "2001 entries") == e.msg, "%s", e.msg);
    const char nul[] = "storage:\n  dir: \"a\\0b\"\n";
    CHECK(apt_config_load_string(nul, sizeof nul - 1, "nul.yaml", &c, &e) == APT_EINVAL);
    CHECK_MSG(!strcmp(e.msg, "nul.yaml:2:8: key 'storage.dir': string contains a NUL character"), "%s", e.msg);
    const char utf[] = "tomo:\n  n_star: \xff\n";
    CHECK(apt_config_load_string(utf, sizeof utf - 1, "utf.yaml", &c, &e) == APT_EINVAL);
    CHECK_MSG(strstr(e.msg, "utf.yaml:2:11: YAML syntax error: ") == e.msg, "%s", e.msg);
    CHECK(apt_config_load_string(big, APT_CONFIG_MAX_FILE_BYTES + 1, "huge", &c, &e) == APT_ERANGE);

    /* empty text, comments only, an emptied section: all defaults */
    const char *empties[] = {"", "# nothing\n", "detector:\n  # crop: 64\n", "~\n"};
    for (size_t i = 0; i < 4; i++) {
        apt_config *d = NULL;
        CHECK_OK(apt_config_load(NULL, &d, &e), &e);
        CHECK_OK(apt_config_load_string(empties[i], strlen(empties[i]), "empty.yaml", &c, &e), &e);
        CHECK_MSG(c && d && apt_config_first_diff(c, d) == NULL, "empty case %zu", i);
        apt_config_destroy(&c);
        apt_config_destroy(&d);
    }
}

/* A --set that must fail with exactly msg and leave the config as it was. */
static void set_fails(apt_config *c, const char *assign, const char *msg)
{
    apt_config *before = NULL;
    apt_error e = {0};
    CHECK_OK(apt_config_clone(c, &before, &e), &e);
    int rc = apt_config_set(c, assign, &e);
    CHECK_MSG(rc != APT_OK, "%s accepted", assign);
    CHECK_MSG(!strncmp(e.msg, msg, strlen(msg)), "%s:\n  got  %s\n  want %s", assign, e.msg, msg);
    const char *d = before ? apt_config_first_diff(c, before) : "clone";
    CHECK_MSG(d == NULL, "%s changed %s", assign, d);
    for (size_t i = 0; before && i < apt_config_key_count(); i++) {
        const char *key = apt_config_key_at(i)->key;
        CHECK(!strcmp(apt_config_source(c, key), apt_config_source(before, key)));
    }
    apt_config_destroy(&before);
}

static void set_ok(apt_config *c, const char *assign)
{
    apt_error e = {0};
    int rc = apt_config_set(c, assign, &e);
    CHECK_MSG(rc == APT_OK, "%s: %s", assign, e.msg);
}

static void test_set(void)
{
    char path[1024];
    src_path(path, sizeof path, "configs/demo.yaml");
    apt_config *c = NULL;
    apt_error e = {0};
    CHECK_OK(apt_config_load(path, &c, &e), &e);
    if (!c)
        return;
    set_ok(c, "tomo.n_star=31");
    CHECK(apt_config_int(c, "tomo.n_star", NULL) == 31);
    CHECK(!strcmp(apt_config_source(c, "tomo.n_star"), "--set"));
    set_ok(c, "storage.spool_frames=false");
    CHECK(!apt_config_bool(c, "storage.spool_frames", NULL));
    set_ok(c, "detector.endpoints=[tcp://a:1,tcp://b:2]");
    CHECK(apt_config_list_len(c, "detector.endpoints", NULL) == 2);
    CHECK(!strcmp(apt_config_list_str(c, "detector.endpoints", 0, NULL), "tcp://a:1"));
    CHECK(!strcmp(apt_config_list_str(c, "detector.endpoints", 1, NULL), "tcp://b:2"));
    set_ok(c, "detector.beam_center=[256.5, 512]");
    CHECK(apt_config_list_len(c, "detector.beam_center", NULL) == 2);
    CHECK(apt_config_list_float(c, "detector.beam_center", 0, NULL) == 256.5);
    CHECK(apt_config_list_float(c, "detector.beam_center", 1, NULL) == 512.0);
    set_ok(c, "tomo.n_star=1e3"); /* an integral float is an int */
    CHECK(apt_config_int(c, "tomo.n_star", NULL) == 1000);
    set_ok(c, "physics.energy_keV=12"); /* an int is a float */
    CHECK(apt_config_float(c, "physics.energy_keV", NULL) == 12.0);
    set_ok(c, "metadata.endpoint=tcp://beamline:5555");
    set_ok(c, "metadata.endpoint="); /* empty VALUE = "" for a string */
    CHECK(!strcmp(apt_config_str(c, "metadata.endpoint", NULL), ""));
    set_ok(c, "detector.protocol=v2");
    CHECK(apt_config_enum(c, "detector.protocol", NULL) == 2);
    set_ok(c, "detector={crop: 256, channel: threshold_2}"); /* a section merges */
    CHECK(apt_config_int(c, "detector.crop", NULL) == 256);
    CHECK(!strcmp(apt_config_str(c, "detector.channel", NULL), "threshold_2"));
    CHECK(apt_config_enum(c, "detector.protocol", NULL) == 2);
    CHECK(apt_config_list_len(c, "detector.endpoints", NULL) == 2);

    set_fails(c, "tomo.n_star", "--set 'tomo.n_star': expected dotted.key=VALUE");
    set_fails(c, "=5", "--set '=5': expected dotted.key=VALUE");
    set_fails(c, "tomo..n_star=5", "--set 'tomo..n_star': not a dotted key");
    set_fails(c, "tomo n_star=5", "--set 'tomo n_star': not a dotted key");
    set_fails(c, "tomo.n_sta=5", "--set tomo.n_sta: unknown key (tomo has: n_star, publish_every, nz, reference, converge_pcc, converge_updates, grid, voxel_size_m, baseline)");
    set_fails(c, "tomo.n_star=[1", "--set tomo.n_star: bad YAML value '[1': did not find expected ',' or ']'");
    set_fails(c, "tomo.n_star=abc", "--set tomo.n_star: expected int in [1, 100000], got string 'abc'");
    set_fails(c, "tomo.n_star=31.5", "--set tomo.n_star: expected int in [1, 100000], got float 31.5");
    set_fails(c, "tomo.n_star=0", "--set tomo.n_star: expected int in [1, 100000], got 0");
    set_fails(c, "detector.crop=", "--set detector.crop: expected int in [8, 4096], got nothing");
    set_fails(c, "detector.crop=[64]", "--set detector.crop: expected int in [8, 4096], got a sequence");
    set_fails(c, "physics.energy_keV=.nan", "--set physics.energy_keV: expected float in [0.1, 1000], got .nan");
    set_fails(c, "physics.probe=5", "--set physics.probe: expected file path (string) or mapping of {model,");
    set_fails(c, "physics.probe=", "--set physics.probe: expected file path (string) or mapping of {model,");
    set_fails(c, "detector.endpoints=[tcp://a:1, 7]",
              "--set detector.endpoints[1]: expected non-empty string, got int 7");
    set_fails(c, "detector.endpoints=[]", "--set detector.endpoints: expected list of 1 to 64 non-empty strings, "
                                          "got 0 entries");
    set_fails(c, "detector.endpoints=tcp://a:1", "--set detector.endpoints: expected list of 1 to 64");
    set_fails(c, "results.endpoint=", "--set results.endpoint: expected non-empty string, got string ''");
    set_fails(c, "storage.spool_frames=yes", "--set storage.spool_frames: expected bool (true or false), got string");
    set_fails(c, "detector={crop: 512, protocol: v9}", "--set detector.protocol: expected one of auto|v1|v2");
    CHECK(apt_config_int(c, "detector.crop", NULL) == 256); /* all or nothing */
    set_fails(c, "detector={crop: 512, crop: 1024}", "--set detector.crop: duplicate key");
    set_fails(c, "detector=5", "--set detector: expected a mapping of {endpoints, protocol,");
    set_fails(c, "tomo.n_star=1\n---\n2", "--set tomo.n_star: bad YAML value: more than one document");
    set_fails(c, "detector.crop.x=1", "--set detector.crop.x: unknown key (detector has: endpoints,");
    set_fails(c, "nosuch=1", "--set nosuch: unknown key (top level has: detector, ingest,");
    apt_config_destroy(&c);
}

static void test_probe_union(void)
{
    char path[1024];
    apt_config *c = NULL, *def = NULL;
    apt_error e = {0};
    CHECK_OK(apt_config_load(NULL, &def, &e), &e);
    snprintf(path, sizeof path, "%s/tests/data/config/probe_path.yaml", src_dir());
    CHECK_OK(apt_config_load(path, &c, &e), &e);
    if (!c || !def)
        return;
    CHECK(apt_config_union_form(c, "physics.probe", NULL) == APT_CFG_FORM_STRING);
    CHECK(!strcmp(apt_config_str(c, "physics.probe", NULL), "probe.h5"));
    CHECK(apt_config_int(c, "physics.modes", NULL) == 4);
    char want[1100];
    snprintf(want, sizeof want, "%s:2:3", path);
    CHECK(!strcmp(apt_config_source(c, "physics.probe"), want));
    apt_config_destroy(&c);

    snprintf(path, sizeof path, "%s/tests/data/config/probe_inline.yaml", src_dir());
    CHECK_OK(apt_config_load(path, &c, &e), &e);
    if (!c)
        return;
    CHECK(apt_config_union_form(c, "physics.probe", NULL) == APT_CFG_FORM_MAPPING);
    CHECK(!strcmp(apt_config_str(c, "physics.probe", NULL), ""));
    CHECK(apt_config_enum(c, "physics.probe.model", NULL) == 1);
    CHECK(apt_config_float(c, "physics.probe.defocus_m", NULL) == -15e-6);
    CHECK(apt_config_is_set(c, "physics.probe") && apt_config_is_set(c, "physics.probe.defocus_m"));
    CHECK(!apt_config_is_set(c, "physics.probe.coherence"));
    snprintf(want, sizeof want, "%s:2:3", path); /* the line:column of `probe:` */
    CHECK_MSG(!strcmp(apt_config_source(c, "physics.probe"), want), "%s", apt_config_source(c, "physics.probe"));
    CHECK(apt_config_equal(c, def, "physics.probe.coherence"));

    set_ok(c, "physics.probe=other.h5");
    CHECK(apt_config_union_form(c, "physics.probe", NULL) == APT_CFG_FORM_STRING);
    CHECK(!strcmp(apt_config_str(c, "physics.probe", NULL), "other.h5"));
    CHECK(apt_config_equal(c, def, "physics.probe.defocus_m")); /* the model restarts from its defaults */
    set_ok(c, "physics.probe.coherence=0.7"); /* a model key switches back to the model, from its defaults */
    CHECK(apt_config_union_form(c, "physics.probe", NULL) == APT_CFG_FORM_MAPPING);
    CHECK(apt_config_float(c, "physics.probe.coherence", NULL) == 0.7);
    CHECK(apt_config_equal(c, def, "physics.probe.defocus_m"));
    CHECK(apt_config_equal(c, def, "physics.probe.model"));
    set_ok(c, "physics.probe.defocus_m=-1e-5");
    set_ok(c, "physics.probe={model: gaussian, central_stop: 0}"); /* a mapping replaces the whole model */
    CHECK(apt_config_enum(c, "physics.probe.model", NULL) == 1);
    CHECK(apt_config_float(c, "physics.probe.central_stop", NULL) == 0.0);
    CHECK(apt_config_equal(c, def, "physics.probe.defocus_m"));
    CHECK(apt_config_equal(c, def, "physics.probe.coherence"));
    CHECK(!strcmp(apt_config_source(c, "physics.probe.model"), "--set"));
    CHECK(!strcmp(apt_config_source(c, "physics.probe.coherence"), "default"));
    set_fails(c, "physics.probe={model: gaussian, focus: 1}",
              "--set physics.probe.focus: unknown key (physics.probe has: model, zp_diameter_m,");
    set_fails(c, "physics.probe.coherence=1.5", "--set physics.probe.coherence: expected float in (0, 1], got 1.5");
    apt_config_destroy(&c);
    apt_config_destroy(&def);
}

/* dump -> load gives an equal config, and dumping that again gives the same text. */
static void roundtrip(const apt_config *c, const char *what)
{
    char *y = apt_config_dump_yaml(c);
    CHECK_MSG(y != NULL, "%s: dump", what);
    if (!y)
        return;
    apt_config *back = NULL;
    apt_error e = {0};
    CHECK_OK(apt_config_load_string(y, strlen(y), what, &back, &e), &e);
    if (back) {
        const char *d = apt_config_first_diff(c, back);
        CHECK_MSG(d == NULL, "%s: round trip differs at %s\n%s", what, d, y);
        char *y2 = apt_config_dump_yaml(back);
        CHECK_MSG(y2 && !strcmp(y, y2), "%s: dump is not stable", what);
        free(y2);
        for (size_t i = 0; i < apt_config_key_count(); i++) /* every key is written out, except a path-form union's */
            if (strcmp(apt_config_source(back, apt_config_key_at(i)->key), "default"))
                continue;
            else
                CHECK_MSG(apt_config_union_form(back, "physics.probe", NULL) == APT_CFG_FORM_STRING &&
                              !strncmp(apt_config_key_at(i)->key, "physics.probe.", 14),
                          "%s: %s not dumped", what, apt_config_key_at(i)->key);
    }
    apt_config_destroy(&back);
    free(y);
}

static void test_dump(void)
{
    char path[1024];
    apt_config *c = NULL;
    apt_error e = {0};
    CHECK_OK(apt_config_load(NULL, &c, &e), &e);
    if (c)
        roundtrip(c, "defaults");
    apt_config_destroy(&c);
    src_path(path, sizeof path, "configs/demo.yaml");
    CHECK_OK(apt_config_load(path, &c, &e), &e);
    if (!c)
        return;
    roundtrip(c, "demo");
    set_ok(c, "storage.dir=\"dir: with # \\\"quotes\\\", ü, a tab\\t and a newline\\n\"");
    set_ok(c, "detector.endpoints=[\"tcp://a:1\", \"'single'\", \"true\", \"42\", \"\\u00e9\"]");
    set_ok(c, "detector.beam_center=[0.1, -3.0000000000000004]");
    set_ok(c, "physics.energy_keV=8.123456789012345");
    set_ok(c, "physics.pixel_size_m=1e-7");
    set_ok(c, "physics.probe.defocus_m=-0.0");
    set_ok(c, "model.weights=\"null\"");
    set_ok(c, "log.level=debug");
    CHECK(!strcmp(apt_config_list_str(c, "detector.endpoints", 4, NULL), "\xc3\xa9"));
    roundtrip(c, "demo+set");
    set_ok(c, "physics.probe=\"probe dir/p.h5\"");
    roundtrip(c, "probe path");
    char *y = apt_config_dump_yaml(c);
    CHECK(y && !strstr(y, "coherence")); /* a path-form probe dumps no model keys */
    free(y);
    apt_config_destroy(&c);
}

static void test_access(void)
{
    apt_config *c = NULL, *d = NULL;
    apt_error e = {0};
    CHECK_OK(apt_config_load(NULL, &c, &e), &e);
    if (!c)
        return;
    CHECK(apt_config_int(c, "detector.crp", &e) == 0 && e.code == APT_EINVAL);
    CHECK(strstr(e.msg, "'detector.crp'") != NULL);
    apt_err_clear(&e);
    CHECK(!strcmp(apt_config_str(c, "detector.crop", &e), "") && e.code == APT_EINVAL);
    CHECK_MSG(strstr(e.msg, "key 'detector.crop', which is of type int") != NULL, "%s", e.msg);
    apt_err_clear(&e);
    CHECK(apt_config_float(c, "tomo.n_star", &e) == 0.0 && e.code == APT_EINVAL);
    apt_err_clear(&e);
    CHECK(apt_config_bool(c, "log.level", &e) == false && e.code == APT_EINVAL);
    apt_err_clear(&e);
    CHECK(apt_config_enum(c, "storage.dir", &e) == -1 && e.code == APT_EINVAL);
    apt_err_clear(&e);
    CHECK(apt_config_list_len(c, "detector.crop", &e) == 0 && e.code == APT_EINVAL);
    apt_err_clear(&e);
    CHECK(!strcmp(apt_config_list_str(c, "detector.endpoints", 1, &e), "") && e.code == APT_ERANGE);
    apt_err_clear(&e);
    CHECK(apt_config_list_float(c, "detector.beam_center", 0, &e) == 0.0 && e.code == APT_ERANGE);
    apt_err_clear(&e);
    CHECK(apt_config_union_form(c, "physics.modes", &e) == APT_CFG_FORM_NONE && e.code == APT_EINVAL);
    apt_err_clear(&e);
    CHECK(apt_config_int(c, "detector.crop", &e) == 128 && e.code == APT_OK); /* success leaves err alone */
    CHECK(apt_config_int(NULL, "detector.crop", NULL) == 0);                /* logged to stderr, no crash */
    CHECK(apt_config_source(c, "nope") == NULL && !apt_config_is_set(c, "nope"));
    CHECK(apt_config_key_find("nope") == NULL && apt_config_key_find(NULL) == NULL);

    CHECK_OK(apt_config_clone(c, &d, &e), &e);
    if (d) {
        CHECK(apt_config_equal(c, d, NULL));
        set_ok(d, "tomo.nz=64");
        CHECK(apt_config_int(c, "tomo.nz", NULL) == 0 && apt_config_int(d, "tomo.nz", NULL) == 64);
        CHECK(!apt_config_equal(c, d, NULL) && !strcmp(apt_config_first_diff(c, d), "tomo.nz"));
    }
    apt_config_destroy(&d);
    apt_config_destroy(&c);
}

/* Fault injection: byte mutations of the reference file either load or fail with a message naming the file;
 * never a crash (run under ASan/UBSan too). Deterministic LCG, so a failure reproduces. */
static void test_mutations(void)
{
    char path[1024];
    src_path(path, sizeof path, "configs/aptomod.yaml");
    size_t len = 0;
    char *text = read_all(path, &len);
    CHECK(text && len > 100);
    if (!text)
        return;
    char *buf = malloc(len + 1);
    static const char junk[] = ":-[]{},#&*!|>'\"%@`? \t\n0.e~\xff";
    uint32_t seed = 12345;
    int loaded = 0, refused = 0;
    for (int round = 0; buf && round < 600; round++) {
        memcpy(buf, text, len);
        for (int m = 0; m < 1 + round % 4; m++) {
            seed = seed * 1664525u + 1013904223u;
            size_t at = (seed >> 8) % len;
            buf[at] = junk[(seed >> 24) % (sizeof junk - 1)];
        }
        apt_config *c = NULL;
        apt_error e = {0};
        int rc = apt_config_load_string(buf, len, "mut.yaml", &c, &e);
        if (rc == APT_OK) {
            CHECK(c != NULL);
            loaded++;
        } else {
            CHECK_MSG(c == NULL && rc == APT_EINVAL && !strncmp(e.msg, "mut.yaml:", 9), "round %d: %d %s", round,
                      rc, e.msg);
            refused++;
        }
        apt_config_destroy(&c);
    }
    CHECK(loaded > 0 && refused > 0);
    free(buf);
    free(text);
}

int main(void)
{
    test_schema();
    test_defaults();
    test_reference();
    test_demo();
    test_errors();
    test_set();
    test_probe_union();
    test_dump();
    test_access();
    test_mutations();
    APT_TEST_DONE();
}
