/* config_int.h - the representation shared by config.c (load, --set, accessors) and config_dump.c (YAML out):
 * one cfg_val per schema row, in table order, so a key's value is found by its row index. */
#ifndef APTOMO_IO_CONFIG_INT_H
#define APTOMO_IO_CONFIG_INT_H

#include <yaml.h>

#include "aptomo/config.h"

typedef struct cfg_val {
    char *s;    /* STR, ENUM (the choice), UNION (the path; "" in mapping form) */
    int64_t i;  /* INT; ENUM index; UNION form (APT_CFG_FORM_*) */
    double f;   /* FLOAT */
    bool b;     /* BOOL */
    char **sv;  /* STR_LIST */
    double *fv; /* FLOAT_LIST */
    size_t n;   /* list length */
    char *src;  /* NULL = default, else "FILE:LINE" or "--set" */
} cfg_val;

struct apt_config {
    char *name;  /* the file (or text name) it was loaded from; NULL = defaults only */
    size_t n;    /* == apt_config_key_count() */
    cfg_val *v;
};

size_t apt_cfg_index(const apt_config_key *k);
void apt_cfg_val_free(cfg_val *v);

#endif
