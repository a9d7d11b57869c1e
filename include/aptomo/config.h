/* config.h - aptomod's configuration: a fixed schema of dotted keys (type, default, range, one-line doc) filled from
 * one YAML file and then from `--set dotted.key=VALUE` overrides (VALUE is YAML flow text).
 * Decision: the schema is data (src/io/config_schema.c), so the loader, the range checks, the dump and the test that
 * keeps configs/aptomod.yaml complete all walk one table and cannot drift apart. Adding a key = one table row + its
 * documented line in configs/aptomod.yaml (tests/test_config.c fails until both exist).
 * A loaded apt_config is immutable to readers: accessors take a const pointer and are safe from many threads. */
#ifndef APTOMO_CONFIG_H
#define APTOMO_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aptomo/error.h"
#include "aptomo/export.h"

APT_API_BEGIN

/* Bounds applied before anything is allocated. */
#define APT_CONFIG_MAX_FILE_BYTES (1u << 20) /* a config file or one --set VALUE */
#define APT_CONFIG_MAX_LIST 1024             /* entries of any list */
#define APT_CONFIG_MAX_STR 4096              /* bytes of any string */

typedef enum apt_config_type {
    APT_CFG_STR,
    APT_CFG_INT,        /* int64; an integral float such as 1e6 is accepted */
    APT_CFG_FLOAT,      /* double; ints are accepted */
    APT_CFG_BOOL,       /* true | false */
    APT_CFG_ENUM,       /* one of `choices` ("a|b|c") */
    APT_CFG_STR_LIST,   /* sequence of strings; min/max bound the length */
    APT_CFG_FLOAT_LIST, /* sequence of numbers; min/max bound the length */
    APT_CFG_UNION       /* a string (a file path) or a mapping of the keys below it (physics.probe) */
} apt_config_type;

enum {
    APT_CFG_NONEMPTY = 1u,    /* strings (and list entries) must not be "" */
    APT_CFG_MIN_OPEN = 2u,    /* the range excludes min: (min, max] */
    APT_CFG_LEN_0_OR_MAX = 4u /* lists: empty or exactly max entries (e.g. [y, x]) */
};

/* Which form a union key was given in. */
enum { APT_CFG_FORM_NONE = 0, APT_CFG_FORM_STRING = 1, APT_CFG_FORM_MAPPING = 2 };

typedef struct apt_config_key {
    const char *key;     /* dotted path, e.g. "detector.crop" */
    apt_config_type type;
    const char *def;     /* default as YAML flow text ("128", "[]", "\"\"", "{}" for a union in mapping form) */
    double min, max;     /* numbers: value range; lists: length range */
    unsigned flags;      /* APT_CFG_NONEMPTY | APT_CFG_MIN_OPEN | APT_CFG_LEN_0_OR_MAX */
    const char *choices; /* APT_CFG_ENUM: "a|b|c" */
    const char *doc;     /* one line: what it does, units */
} apt_config_key;

typedef struct apt_config apt_config;

/* The schema, in table order (sections contiguous; a union precedes the keys below it). */
size_t apt_config_key_count(void);
const apt_config_key *apt_config_key_at(size_t i);
const apt_config_key *apt_config_key_find(const char *key); /* NULL if unknown */

/* Load defaults, then the YAML file at path (NULL = defaults only). On error *out is NULL and err says
 * "FILE:LINE:COLUMN: key 'a.b': expected ..., got ...". */
int apt_config_load(const char *path, apt_config **out, apt_error *err);
/* Same from text in memory (e.g. the config stored in a result file); name is used in messages. */
int apt_config_load_string(const char *text, size_t len, const char *name, apt_config **out, apt_error *err);
/* Apply "dotted.key=VALUE" (VALUE parsed as YAML flow: 31, true, [a, b], {model: gaussian}). A section key takes a
 * mapping and sets only the keys it names. A union replaces its whole value: given a path or a mapping, the keys
 * below it restart from their defaults (then the mapping's keys apply); setting one key below a union in path form
 * switches it to the mapping form. An empty VALUE sets a string key to "". All or nothing: on error cfg is
 * unchanged and err says "--set a.b: ...". */
int apt_config_set(apt_config *cfg, const char *assignment, apt_error *err);
int apt_config_set_value(apt_config *cfg, const char *key, const char *value, apt_error *err);
int apt_config_clone(const apt_config *cfg, apt_config **out, apt_error *err);
void apt_config_destroy(apt_config **cfg);

/* Accessors. Asking for an unknown key or with the wrong type is a programming error: they return a zero value
 * ("" for strings) and write the fault into err, or to stderr when err is NULL. err is not touched on success. */
const char *apt_config_str(const apt_config *cfg, const char *key, apt_error *err); /* STR, ENUM, UNION (path) */
int64_t apt_config_int(const apt_config *cfg, const char *key, apt_error *err);
double apt_config_float(const apt_config *cfg, const char *key, apt_error *err);
bool apt_config_bool(const apt_config *cfg, const char *key, apt_error *err);
int apt_config_enum(const apt_config *cfg, const char *key, apt_error *err); /* index into choices; -1 on misuse */
size_t apt_config_list_len(const apt_config *cfg, const char *key, apt_error *err);
const char *apt_config_list_str(const apt_config *cfg, const char *key, size_t i, apt_error *err);
double apt_config_list_float(const apt_config *cfg, const char *key, size_t i, apt_error *err);
/* APT_CFG_FORM_STRING (a path: apt_config_str) or APT_CFG_FORM_MAPPING (read the keys below it). */
int apt_config_union_form(const apt_config *cfg, const char *key, apt_error *err);

/* Where the value came from: "default", "FILE:LINE:COLUMN" (of the key) or "--set"; NULL for an unknown key. */
const char *apt_config_source(const apt_config *cfg, const char *key);
bool apt_config_is_set(const apt_config *cfg, const char *key); /* from the file or --set */
/* Values equal (sources ignored)? key NULL compares every key. */
bool apt_config_equal(const apt_config *a, const apt_config *b, const char *key);
/* First key whose values differ, NULL if equal everywhere. */
const char *apt_config_first_diff(const apt_config *a, const apt_config *b);

/* Refusing a value after loading (a check the schema cannot express, a file that does not load): the message
   becomes "FILE:LINE:COLUMN: key 'K': WHY", "--set K: WHY", or "FILE: key 'K' (not set, default): WHY", like the
   loader's own. apt_config_fail formats WHY; apt_config_blame takes err's current message as WHY (dropping a
   leading "K: "). Both return the code (blame: err's, or APT_EINVAL). */
int apt_config_fail(const apt_config *cfg, const char *key, apt_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
int apt_config_blame(const apt_config *cfg, const char *key, apt_error *err);

/* The effective configuration as YAML (every key; loads back to an equal config). malloc'd; NULL on OOM. */
char *apt_config_dump_yaml(const apt_config *cfg);

APT_API_END

#endif
