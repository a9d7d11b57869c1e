/* ptycho_emu.cpp - src/ptycho/multislice_cuda.cu under the serial CPU emulation of this folder, against the CPU
 * engine of libaptomo (apt_ptycho_cpu_ops, apt_ptycho_cpu_descend) on the same plan: forward intensities, loss,
 * object and probe gradients (added into non-zero arrays, through an index list), each gradient alone, the descent
 * over three batches and two passes; with device batches of 1 to 512 positions (the emulated free memory sets the
 * batch size), repeated positions and windows on the object's edges. Also: bitwise repeatability, a refusal when
 * not even one position fits, and fault injection (every runtime call, launch and FFT in turn fails: the call must
 * report it and leave every output untouched). Built and run by tests/test_ptycho_cuda_emu.py; exit 1 on a failure.
 * Tolerances: both sides use FFTW here, so only summation order and the kernels' own arithmetic differ: relative L2
 * 1e-5 (observed about 1e-6), loss 1e-6. */
extern "C" {
#include "ptycho/ptycho_int.h"
}
#include <math.h>
#include <stdio.h>
#include <vector>

#include "cuda_runtime.h"

static uint64_t rs = 88172645463325252ULL;
static double ur()
{
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (double)(rs >> 11) / 9007199254740992.0;
}
static int failures = 0;

static void cmp(const char *what, const float *a, const float *b, size_t n, double tol)
{
    double num = 0, den = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d, den += (double)b[i] * b[i];
        mx = fabs(d) > mx || isnan(d) ? fabs(d) : mx;
    }
    double rel = sqrt(num / (den > 0 ? den : 1));
    int bad = !(rel <= tol);
    failures += bad;
    printf("  %-28s rel L2 %.2e max abs %.2e%s\n", what, rel, mx, bad ? "  FAIL" : "");
}

static void cmp_loss(const char *what, double a, double b)
{
    double rel = fabs(a - b) / (fabs(b) > 0 ? fabs(b) : 1);
    int bad = !(rel <= 1e-6);
    failures += bad;
    printf("  %-28s %.10g vs %.10g%s\n", what, a, b, bad ? "  FAIL" : "");
}

/* emulated free memory for which the backend picks a batch of about `cap` positions (its formula, docs/GPU.md) */
static size_t free_for(const apt_ptycho_geom *g, size_t cap)
{
    size_t hw = (size_t)g->H * g->W, mhw = (size_t)g->M * hw, obj = (size_t)g->L * g->Ny * g->Nx;
    size_t fixed = (2 * obj + 2 * mhw + hw) * 8 + (hw + (size_t)g->Ny * g->Nx) * 4 + 10001 * 8 + ((size_t)64 << 20);
    size_t per = ((size_t)g->L + 1) * mhw * 8 + 3 * hw * 4 + hw * 8 + 257 * 8 + 16;
    return (fixed + cap * per) / 8 * 10 + 1000;
}

static void geometry(int M, int L, int H, int W, int Ny, int Nx, size_t J, size_t cap)
{
    apt_ptycho_geom g = {M, H, W, L, Ny, Nx, 1e-10, 10e-9, 1e-6};
    apt_error err = {};
    apt_ptycho *p = NULL;
    printf("M=%d L=%d %dx%d object %dx%d, %zu positions, batch ~%zu\n", M, L, H, W, Ny, Nx, J, cap);
    if (apt_ptycho_cpu_new(&g, 2, 0, &p, &err)) {
        printf("  cpu plan: %s  FAIL\n", err.msg);
        failures++;
        return;
    }
    size_t hw = (size_t)H * W, mhw = M * hw, obj = (size_t)L * Ny * Nx;
    std::vector<float> probe(2 * mhw), object(2 * obj), meas(J * hw);
    std::vector<int32_t> pos(2 * J);
    for (auto &v : probe)
        v = (float)(ur() - 0.5);
    for (size_t i = 0; i < obj; i++) {
        double ph = ur() - 0.5, a = 0.8 + 0.2 * ur();
        object[2 * i] = (float)(a * cos(ph)), object[2 * i + 1] = (float)(a * sin(ph));
    }
    for (size_t j = 0; j < J; j++) {
        int r = (int)(ur() * (Ny - H + 1)), c = (int)(ur() * (Nx - W + 1));
        if (j == 0)
            r = 0, c = 0;
        if (j == 1)
            r = Ny - H, c = Nx - W;
        if (j == 2)
            r = 0, c = Nx - W;
        if (j == 3 && J > 4) /* repeated */
            r = pos[0], c = pos[1];
        pos[2 * j] = r, pos[2 * j + 1] = c;
    }
    for (auto &v : meas)
        v = ur() < 0.1 ? -1.0f : (float)(ur() * 2 * mhw);
    const apt_ptycho_ops *gpu = apt_ptycho_cuda_ops();
    emu_free_bytes = free_for(&g, cap);
    if (gpu->init(p, &err)) {
        printf("  init: %s  FAIL\n", err.msg);
        failures++;
        apt_ptycho_cpu_free(p);
        return;
    }
    const apt_ptycho_ops &cpu = apt_ptycho_cpu_ops;
    std::vector<float> ic(J * hw), ig(J * hw);
    cpu.run(p, probe.data(), object.data(), pos.data(), NULL, NULL, J, NULL, NULL, NULL, ic.data(), &err);
    if (gpu->run(p, probe.data(), object.data(), pos.data(), NULL, NULL, J, NULL, NULL, NULL, ig.data(), &err))
        printf("  forward: %s  FAIL\n", err.msg), failures++;
    cmp("forward intensities", ig.data(), ic.data(), J * hw, 1e-5);
    /* gradients through an index list (two of every three positions, backwards), added into non-zero arrays */
    std::vector<size_t> idx;
    for (size_t k = J; k-- > 0;)
        if (k % 3 != 1)
            idx.push_back(k);
    std::vector<float> goc(2 * obj, 0.25f), gog(2 * obj, 0.25f), gpc(2 * mhw, 0.5f), gpg(2 * mhw, 0.5f);
    double lc = 0, lg = 0;
    cpu.run(p, probe.data(), object.data(), pos.data(), meas.data(), idx.data(), idx.size(), &lc, goc.data(),
            gpc.data(), NULL, &err);
    long l0 = emu_launches;
    if (gpu->run(p, probe.data(), object.data(), pos.data(), meas.data(), idx.data(), idx.size(), &lg, gog.data(),
                 gpg.data(), NULL, &err))
        printf("  gradients: %s  FAIL\n", err.msg), failures++;
    printf("  %ld kernel launches for the gradients\n", emu_launches - l0);
    cmp_loss("loss", lg, lc);
    cmp("object gradient", gog.data(), goc.data(), 2 * obj, 1e-5);
    cmp("probe gradient", gpg.data(), gpc.data(), 2 * mhw, 1e-5);
    std::vector<float> gp2(2 * mhw, 0.5f);
    double l2 = 0, l3 = 0;
    gpu->run(p, probe.data(), object.data(), pos.data(), meas.data(), idx.data(), idx.size(), &l2, NULL, gp2.data(),
             NULL, &err);
    gpu->run(p, probe.data(), object.data(), pos.data(), meas.data(), idx.data(), idx.size(), &l3, NULL, NULL, NULL,
             &err);
    cmp("probe gradient alone", gp2.data(), gpc.data(), 2 * mhw, 1e-5);
    cmp_loss("loss alone", l3, lc);
    std::vector<float> gog2(2 * obj, 0.25f);
    double lg2 = 0;
    gpu->run(p, probe.data(), object.data(), pos.data(), meas.data(), idx.data(), idx.size(), &lg2, gog2.data(), NULL,
             NULL, &err);
    if (memcmp(gog2.data(), gog.data(), 4 * gog.size()) || lg2 != lg)
        printf("  two runs differ in their bits  FAIL\n"), failures++;

    /* descent: consistent patterns (of `object`, 5 % unmeasured) from a flat start, 3 round-robin batches */
    size_t B = 3, n = 0;
    std::vector<size_t> order(J), start(B + 1);
    for (size_t b = 0; b < B; b++) {
        start[b] = n;
        for (size_t i = b; i < J; i += B)
            order[n++] = i;
    }
    start[B] = n;
    std::vector<float> pint(hw);
    for (size_t i = 0; i < hw; i++) {
        double s = 0;
        for (int m = 0; m < M; m++) {
            const float *v = &probe[2 * (m * hw + i)];
            s += (double)v[0] * v[0] + (double)v[1] * v[1];
        }
        pint[i] = (float)s;
    }
    cpu.run(p, probe.data(), object.data(), pos.data(), NULL, NULL, J, NULL, NULL, NULL, meas.data(), &err);
    for (auto &v : meas)
        v = ur() < 0.05 ? -1.0f : v;
    std::vector<float> flat(2 * obj);
    for (size_t i = 0; i < obj; i++)
        flat[2 * i] = 1, flat[2 * i + 1] = 0;
    apt_recon_opts o = {2, (int)B, 1.0};
    std::vector<float> oc(flat), og(flat);
    double lpc[2] = {0, 0}, lpg[2] = {0, 0};
    apt_ptycho_cpu_descend(p, probe.data(), meas.data(), pos.data(), J, order.data(), start.data(), B, pint.data(),
                           &o, oc.data(), lpc, &err);
    if (gpu->descend(p, probe.data(), meas.data(), pos.data(), J, order.data(), start.data(), B, pint.data(), &o,
                     og.data(), lpg, &err))
        printf("  descend: %s  FAIL\n", err.msg), failures++;
    cmp("reconstruction", og.data(), oc.data(), 2 * obj, 1e-5);
    for (size_t i = 0; i < 2 * obj; i++)
        oc[i] -= flat[i], og[i] -= flat[i];
    cmp("reconstruction step", og.data(), oc.data(), 2 * obj, 1e-5);
    cmp_loss("pass 1 loss", lpg[0], lpc[0]);
    cmp_loss("pass 2 loss", lpg[1], lpc[1]);

    /* fault injection: call number f fails; the error is reported and nothing is written (or, when the call needed
       fewer than f, it succeeds with the right results) */
    std::fill(gog2.begin(), gog2.end(), 0.25f);
    gpu->run(p, probe.data(), object.data(), pos.data(), meas.data(), idx.data(), idx.size(), &lg2, gog2.data(), NULL,
             NULL, &err);
    int faults = 0, bad = 0;
    for (long f = 0; f < 400; f += f < 40 ? 1 : 13) {
        std::vector<float> g3(2 * obj, 0.25f), o3(flat), i3(J * hw, 7.0f);
        double l4 = -7, lp3[2] = {-7, -7};
        emu_fail_after = f;
        int rc1 = gpu->run(p, probe.data(), object.data(), pos.data(), meas.data(), idx.data(), idx.size(), &l4,
                           g3.data(), NULL, NULL, &err);
        emu_fail_after = f;
        int rc2 = gpu->descend(p, probe.data(), meas.data(), pos.data(), J, order.data(), start.data(), B,
                               pint.data(), &o, o3.data(), lp3, &err);
        emu_fail_after = f;
        int rc3 = gpu->run(p, probe.data(), object.data(), pos.data(), NULL, NULL, J, NULL, NULL, NULL, i3.data(),
                           &err);
        emu_fail_after = -1;
        faults += (rc1 != 0) + (rc2 != 0) + (rc3 != 0);
        bad += rc1 ? l4 != -7 || memcmp(g3.data(), std::vector<float>(2 * obj, 0.25f).data(), 8 * obj) != 0
                   : l4 != lg2 || memcmp(g3.data(), gog2.data(), 8 * obj) != 0;
        bad += rc2 ? lp3[0] != -7 || memcmp(o3.data(), flat.data(), 8 * obj) != 0 : lp3[0] != lpg[0];
        bad += rc3 ? i3[0] != 7.0f || i3[J * hw - 1] != 7.0f : memcmp(i3.data(), ig.data(), 4 * J * hw) != 0;
        if (rc1 && rc1 != APT_ENODEV && rc1 != APT_ENOMEM)
            bad++;
    }
    printf("  fault injection: %d failed calls, %d with outputs touched or wrong%s\n", faults, bad,
           bad || !faults ? "  FAIL" : "");
    failures += bad || !faults;
    gpu->fini(p);
    if (p->dev)
        printf("  fini left state  FAIL\n"), failures++;

    /* not even one position fits: refused, nothing kept */
    emu_free_bytes = 1 << 20;
    int rc = gpu->init(p, &err);
    printf("  1 MiB free: %s\n", err.msg);
    if (rc != APT_ENOMEM || p->dev || !strstr(err.msg, "MiB of device memory free"))
        printf("  refusal  FAIL\n"), failures++;
    apt_ptycho_cpu_free(p);
}

int main()
{
    geometry(1, 1, 9, 7, 20, 17, 11, 512); /* odd window, one batch */
    geometry(1, 1, 9, 7, 20, 17, 11, 3);   /* the same in batches of 3 */
    geometry(3, 3, 16, 12, 40, 36, 23, 4); /* modes and slices */
    geometry(2, 2, 8, 8, 24, 24, 50, 7);   /* dense: many colour classes */
    geometry(2, 4, 10, 13, 30, 31, 9, 1);  /* one position per batch */
    geometry(3, 1, 15, 15, 15, 15, 6, 2);  /* the window is the object */
    printf("failures: %d\n", failures);
    return failures != 0;
}
