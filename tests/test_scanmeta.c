/* test_scanmeta.c - scan metadata JSON: every form parses to the numbers written (bit-exact doubles), format() and
 * parse() are inverse for each kind, and wrong types, non-finite numbers, unknown htypes and over-long position
 * lists are refused with a message naming the key (the bound is enforced before allocation). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apt_test.h"
#include "aptomo/scanmeta.h"

static int parse(const char *s, size_t max, apt_scanmeta *m, apt_error *err)
{
    return apt_scanmeta_parse(s, strlen(s), max, m, err);
}

static void fails(const char *json, size_t max, int code, const char *needle, int line)
{
    apt_scanmeta m;
    apt_error err = {0};
    int rc = parse(json, max, &m, &err);
    CHECK_MSG(rc == code && strstr(err.msg, needle), "line %d: %s -> rc=%d msg '%s' (want %d '%s')", line, json, rc,
              err.msg, code, needle);
    CHECK(m.positions_m == NULL && m.n_positions == 0);
    apt_scanmeta_clear(&m);
}
#define FAILS(json, max, code, needle) fails(json, max, code, needle, __LINE__)

static void test_forms(void)
{
    apt_scanmeta m;
    apt_error err = {0};
    CHECK_OK(parse("{\"angle_deg\": -12.125, \"positions_m\": [[1e-6, -2.5e-6], [0, 3]], \"other\": {\"x\": 1}}",
                   16, &m, &err), &err);
    CHECK(m.kind == APT_META_SERIES && m.has_angle && m.angle_deg == -12.125 && !m.has_series && !m.has_pos);
    CHECK(m.n_positions == 2 && m.positions_m[0] == 1e-6 && m.positions_m[1] == -2.5e-6 && m.positions_m[2] == 0 &&
          m.positions_m[3] == 3);
    apt_scanmeta_clear(&m);
    CHECK(m.positions_m == NULL && m.n_positions == 0);

    CHECK_OK(parse("{\"angle_deg\": 90}", 16, &m, &err), &err);
    CHECK(m.kind == APT_META_SERIES && m.has_angle && m.angle_deg == 90.0 && m.n_positions == 0);
    apt_scanmeta_clear(&m);
    CHECK_OK(parse("{\"unrelated\": true}", 16, &m, &err), &err); /* user_data may carry other things */
    CHECK(m.kind == APT_META_SERIES && !m.has_angle && m.n_positions == 0);
    apt_scanmeta_clear(&m);

    CHECK_OK(parse("{\"pos_m\": [1.25e-6, -3e-7]}", 1, &m, &err), &err);
    CHECK(m.kind == APT_META_FRAME && m.has_pos && m.pos_m[0] == 1.25e-6 && m.pos_m[1] == -3e-7);
    apt_scanmeta_clear(&m);

    CHECK_OK(parse("{\"htype\":\"aptomo-scan-1.0\",\"series\":12,\"angle_deg\":45.5,\"n_frames\":3,"
                   "\"positions_m\":[[1,2],[3,4],[5,6]]}", 3, &m, &err), &err);
    CHECK(m.kind == APT_META_SERIES && m.has_series && m.series == 12 && m.angle_deg == 45.5 && m.has_n_frames &&
          m.n_frames == 3 && m.n_positions == 3 && m.positions_m[5] == 6 && m.frame0 == 0);
    apt_scanmeta_clear(&m);
    CHECK_OK(parse("{\"htype\":\"aptomo-scan-1.0\",\"series\":1,\"angle_deg\":0}", 3, &m, &err), &err);
    CHECK(m.has_angle && m.angle_deg == 0 && !m.has_n_frames && m.n_positions == 0);
    apt_scanmeta_clear(&m);

    CHECK_OK(parse("{\"htype\":\"aptomo-pos-1.0\",\"series\":12,\"frame0\":100,\"positions_m\":[[7,8]]}", 3, &m,
                   &err), &err);
    CHECK(m.kind == APT_META_POSITIONS && m.series == 12 && m.frame0 == 100 && m.n_positions == 1 &&
          m.positions_m[0] == 7 && m.positions_m[1] == 8);
    apt_scanmeta_clear(&m);
}

static void test_errors(void)
{
    FAILS("{\"angle_deg\": \"45\"}", 4, APT_EPROTO, "angle_deg");
    FAILS("{\"angle_deg\": NaN}", 4, APT_EPROTO, "invalid JSON");
    FAILS("{\"angle_deg\": 1e999}", 4, APT_EPROTO, "invalid JSON");
    FAILS("{\"positions_m\": [[1, 2], [3]]}", 4, APT_EPROTO, "positions_m\"[1]");
    FAILS("{\"positions_m\": [[1, 2], [3, \"x\"]]}", 4, APT_EPROTO, "positions_m\"[1]");
    FAILS("{\"positions_m\": [[1, 2], [3, 4, 5]]}", 4, APT_EPROTO, "positions_m\"[1]");
    FAILS("{\"positions_m\": {\"a\": 1}}", 4, APT_EPROTO, "positions_m");
    FAILS("{\"positions_m\": [[1,2],[3,4],[5,6]]}", 2, APT_ERANGE, "positions_m");
    FAILS("{\"pos_m\": [1]}", 4, APT_EPROTO, "pos_m");
    FAILS("{\"pos_m\": \"here\"}", 4, APT_EPROTO, "pos_m");
    FAILS("{\"htype\":\"aptomo-scan-2.0\",\"series\":1}", 4, APT_EPROTO, "aptomo-scan-2.0");
    FAILS("{\"htype\":7}", 4, APT_EPROTO, "htype");
    FAILS("{\"htype\":\"aptomo-scan-1.0\",\"angle_deg\":1}", 4, APT_EPROTO, "series");
    FAILS("{\"htype\":\"aptomo-scan-1.0\",\"series\":1}", 4, APT_EPROTO, "angle_deg");
    FAILS("{\"htype\":\"aptomo-scan-1.0\",\"series\":-1,\"angle_deg\":1}", 4, APT_EPROTO, "series");
    FAILS("{\"htype\":\"aptomo-scan-1.0\",\"series\":1.5,\"angle_deg\":1}", 4, APT_EPROTO, "series");
    FAILS("{\"htype\":\"aptomo-scan-1.0\",\"series\":1,\"angle_deg\":1,\"n_frames\":1,\"positions_m\":[[1,2],[3,4]]}",
          4, APT_EPROTO, "n_frames");
    FAILS("{\"htype\":\"aptomo-pos-1.0\",\"series\":1,\"positions_m\":[[1,2]]}", 4, APT_EPROTO, "frame0");
    FAILS("{\"htype\":\"aptomo-pos-1.0\",\"series\":1,\"frame0\":0}", 4, APT_EPROTO, "positions_m");
    FAILS("{\"angle_deg\": 1, \"angle_deg\": 2}", 4, APT_EPROTO, "duplicate");
    FAILS("[1, 2]", 4, APT_EPROTO, "not an object");
    FAILS("{\"angle_deg\": ", 4, APT_EPROTO, "invalid JSON");
    apt_scanmeta m;
    apt_error err = {0};
    CHECK(apt_scanmeta_parse("", 0, 4, &m, &err) == APT_EPROTO && strstr(err.msg, "empty"));
    CHECK(apt_scanmeta_parse(NULL, 10, 4, &m, &err) == APT_EPROTO);

    /* a huge list against a small bound: refused with ERANGE, nothing kept */
    size_t n = 100000, cap = n * 8 + 64, at = 0;
    char *big = malloc(cap);
    at += (size_t)snprintf(big + at, cap - at, "{\"positions_m\":[");
    for (size_t i = 0; i < n; i++)
        at += (size_t)snprintf(big + at, cap - at, "%s[1,2]", i ? "," : "");
    at += (size_t)snprintf(big + at, cap - at, "]}");
    CHECK(apt_scanmeta_parse(big, at, 1000, &m, &err) == APT_ERANGE && strstr(err.msg, "100000"));
    CHECK(m.positions_m == NULL);
    CHECK_OK(apt_scanmeta_parse(big, at, n, &m, &err), &err);
    CHECK(m.n_positions == n && m.positions_m[2 * n - 1] == 2);
    apt_scanmeta_clear(&m);
    free(big);
}

static void roundtrip(const apt_scanmeta *a, const char *htype, int line)
{
    char *s = apt_scanmeta_format(a, htype);
    CHECK_MSG(s != NULL, "line %d: format failed", line);
    if (!s)
        return;
    apt_scanmeta b;
    apt_error err = {0};
    int rc = apt_scanmeta_parse(s, strlen(s), 1u << 20, &b, &err);
    CHECK_MSG(rc == APT_OK, "line %d: %s: %s", line, s, err.msg);
    CHECK_MSG(b.kind == a->kind && b.has_angle == a->has_angle && (!a->has_angle || b.angle_deg == a->angle_deg),
              "line %d: %s", line, s);
    CHECK(b.n_positions == a->n_positions);
    for (size_t i = 0; i < 2 * a->n_positions && i < 2 * b.n_positions; i++)
        CHECK_MSG(b.positions_m[i] == a->positions_m[i], "line %d: position %zu %.17g != %.17g", line, i,
                  b.positions_m[i], a->positions_m[i]);
    if (htype || a->kind == APT_META_POSITIONS)
        CHECK(b.has_series && b.series == a->series);
    if (htype && a->has_n_frames)
        CHECK(b.has_n_frames && b.n_frames == a->n_frames);
    if (a->kind == APT_META_POSITIONS)
        CHECK(b.frame0 == a->frame0);
    if (a->kind == APT_META_FRAME)
        CHECK(b.has_pos && b.pos_m[0] == a->pos_m[0] && b.pos_m[1] == a->pos_m[1]);
    apt_scanmeta_clear(&b);
    free(s);
}

static void test_format(void)
{
    double pos[8] = {1e-6, -2e-6, 0.1 + 0.2, 1.0 / 3.0, -0.0, 5e-324, 1.7976931348623157e308, -123.456e-9};
    apt_scanmeta a = {.kind = APT_META_SERIES, .has_series = 1, .series = 77, .has_angle = 1, .angle_deg = 179.999,
                      .has_n_frames = 1, .n_frames = 4, .positions_m = pos, .n_positions = 4};
    roundtrip(&a, NULL, __LINE__);
    roundtrip(&a, "aptomo-scan-1.0", __LINE__);
    char *s = apt_scanmeta_format(&a, NULL); /* the user_data form carries only angle and positions */
    CHECK(s && !strstr(s, "series") && !strstr(s, "htype") && strstr(s, "angle_deg"));
    free(s);
    a.has_angle = 0;
    roundtrip(&a, NULL, __LINE__);
    a = (apt_scanmeta){.kind = APT_META_POSITIONS, .has_series = 1, .series = 3, .frame0 = 40, .positions_m = pos,
                       .n_positions = 3};
    roundtrip(&a, NULL, __LINE__);
    s = apt_scanmeta_format(&a, NULL);
    CHECK(s && strstr(s, "\"htype\":\"aptomo-pos-1.0\""));
    free(s);
    a = (apt_scanmeta){.kind = APT_META_FRAME, .has_pos = 1, .pos_m = {2.5e-7, -1e-6}};
    roundtrip(&a, NULL, __LINE__);
    /* non-finite numbers have no JSON form */
    a.pos_m[0] = NAN;
    CHECK(apt_scanmeta_format(&a, NULL) == NULL);
    pos[3] = INFINITY;
    a = (apt_scanmeta){.kind = APT_META_SERIES, .has_angle = 1, .angle_deg = 1, .positions_m = pos, .n_positions = 4};
    CHECK(apt_scanmeta_format(&a, NULL) == NULL);
    a.n_positions = 0;
    a.angle_deg = NAN;
    CHECK(apt_scanmeta_format(&a, NULL) == NULL);
}

int main(void)
{
    test_forms();
    test_errors();
    test_format();
    APT_TEST_DONE();
}
