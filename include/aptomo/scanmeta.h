/* scanmeta.h - angle and scan positions of a series, from any of the places they arrive: the v1 header appendix or
 * v2 start user_data ({"angle_deg": a, "positions_m": [[y,x],...]}), a frame's appendix/user_data ({"pos_m": [y,x]}),
 * or the scan-metadata channel ("aptomo-scan-1.0", "aptomo-pos-1.0"). Pure parse/format over JSON text. */
#ifndef APTOMO_SCANMETA_H
#define APTOMO_SCANMETA_H

#include <stddef.h>
#include <stdint.h>

#include "aptomo/error.h"
#include "aptomo/export.h"

APT_API_BEGIN

typedef enum {
    APT_META_SERIES = 1,   /* angle and/or positions for a whole series (user_data, aptomo-scan-1.0) */
    APT_META_POSITIONS = 2, /* aptomo-pos-1.0: positions from frame0 on */
    APT_META_FRAME = 3      /* {"pos_m": [y,x]} of one frame */
} apt_meta_kind;

typedef struct apt_scanmeta {
    apt_meta_kind kind;
    int has_series;  uint64_t series;
    int has_angle;   double angle_deg;
    int has_n_frames; uint64_t n_frames;
    uint64_t frame0;             /* first frame the positions belong to (0 unless aptomo-pos-1.0) */
    double *positions_m;         /* owned, [n_positions][2] as (y, x) metres; NULL when none */
    size_t n_positions;
    int has_pos;     double pos_m[2]; /* APT_META_FRAME */
} apt_scanmeta;

/* Parse JSON text. max_positions bounds the array before allocation (APT_ERANGE past it). Unknown extra keys are
   ignored (user_data may carry other things); wrong types are APT_EPROTO naming the key. */
int apt_scanmeta_parse(const char *json, size_t len, size_t max_positions, apt_scanmeta *out, apt_error *err);
void apt_scanmeta_clear(apt_scanmeta *m);
/* Format as JSON text (malloc'd, caller frees): SERIES as user_data form when htype is NULL, or with the given
   htype ("aptomo-scan-1.0"); POSITIONS as aptomo-pos-1.0; FRAME as {"pos_m": [...]}. */
char *apt_scanmeta_format(const apt_scanmeta *m, const char *htype);

APT_API_END

#endif
