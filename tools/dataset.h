/* dataset.h - what an `aptomo dataset` directory is (dataset_plan.c): the parameters that fix its content, the ICs
 * they derive (simulation seed, layers, pitch scale of IC i, from --seed alone) and the manifest dataset.json that
 * records both, which a rerun reads back to resume or to refuse a directory made with other parameters. */
#ifndef APTOMO_TOOLS_DATASET_H
#define APTOMO_TOOLS_DATASET_H

#include <jansson.h>
#include <stdint.h>

#include "aptomo/error.h"
#include "aptomo/geometry.h"

#define DS_MAX_COUNT 100000
#define DS_SEED_MAX ((1ull << 53) - 1) /* sim.seed's range (a JSON number stays exact) */
#define DS_MANIFEST "dataset.json"

/* Everything the pairs depend on (not --count, --threads, --keep-scans or the output path). */
typedef struct ds_params {
    uint64_t seed;         /* --seed: every random choice of the set */
    uint64_t held_out;     /* the configuration's sim.seed: no IC gets it (the demo scan stays unseen) */
    int layers[2];         /* --layers LO:HI */
    double pitch[2];       /* --pitch-scale LO:HI */
    int angles;            /* sim.angles */
    double range_deg;      /* sim.range_deg */
    apt_grid3 grid;        /* sim.grid, sim.voxel_size_m: the grid of truth and Approximant */
    const char *config;    /* the effective configuration (YAML) every IC starts from */
} ds_params;

typedef struct ds_ic {
    int index;
    uint64_t seed;         /* sim.seed of this IC */
    int layers;            /* sim.layers */
    double pitch_scale;    /* sim.pitch_scale, a multiple of 0.001 */
    char name[16];         /* "ic-000" */
    char sets[3][64];      /* the --set assignments that make this IC from the configuration */
} ds_ic;

/* IC i of the set: a function of (params, i) only, so growing --count keeps the ICs made before. Seeds are
   distinct across i and never params->held_out. */
void ds_plan_ic(const ds_params *p, int i, ds_ic *ic);

/* The manifest: {"format", "params", "count", "keep_scans", "complete", "command", "pairs": [...]}; command is
   "aptomo" and the command's argv (argv[0] = "dataset"). NULL on OOM. */
json_t *ds_manifest(const ds_params *p, const ds_ic *ics, int count, int keep_scans, int complete, int argc,
                    char **argv);
/* DIR/dataset.json through a temporary file and rename. APT_EIO with the path in err. */
int ds_manifest_write(const char *dir, const json_t *m, apt_error *err);
/* Compare DIR/dataset.json with params: APT_OK when they match; APT_EINVAL naming the first parameter that differs
   (its option, the recorded and the new value) or the fault of a file that is no manifest; APT_EIO when it cannot
   be read. */
int ds_manifest_check(const char *dir, const ds_params *p, apt_error *err);

#endif
