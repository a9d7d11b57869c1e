/* materials.c - complex refractive index n = 1 - delta + i beta of the IC materials (SiO2, Si, Cu, W) at the beam
 * energy, from atomic scattering factors: delta + i beta = r_e lambda^2 / (2 pi) sum_atoms n_a (f1 + i f2).
 * Decision: no network and no data package, so f1, f2 are tabulated at 8.8 keV (the APT energy; Henke-table values
 * from memory, cross-checked against mass attenuation coefficients, docs/PHYSICS.md) and carried to other
 * energies by f1 -> Z* (free electrons, exact away from edges) and f2 ~ E^-2 with jumps at the absorption edges. */
#include <math.h>
#include <stddef.h>

#include "aptomo/sim.h"

#define R_E 2.8179403262e-15        /* classical electron radius (m) */
#define N_A 6.02214076e23           /* Avogadro (1/mol) */
#define HC_KEV_M 1.23984198e-9      /* h c in keV m */
#define REF_KEV 8.8

typedef struct edge {
    double keV, jump;  /* f2 above the edge = jump * f2 below */
} edge;

typedef struct element {
    const char *name;
    int Z;
    double A;          /* g/mol */
    double f1, f2;     /* at 8.8 keV */
    edge edges[4];     /* absorption edges in 1..100 keV, ascending; keV 0 ends the list */
} element;

/* f1 at 8.8 keV includes the anomalous term: Cu is 179 eV below its K edge (8.979 keV), f' ~ -3.9 e. f2 checked
   against mu/rho (f2 = (mu/rho) A / (N_A 2 r_e lambda)): Cu 37.7 cm^2/g -> 0.50, W 141 -> 5.4, Si 48.5 -> 0.285. */
enum { EL_O, EL_SI, EL_CU, EL_W, EL_COUNT };
static const element elements[EL_COUNT] = {
    [EL_O] = {"O", 8, 15.999, 8.04, 0.027, {{0, 0}}},
    [EL_SI] = {"Si", 14, 28.086, 14.22, 0.285, {{1.839, 10.0}, {0, 0}}},
    [EL_CU] = {"Cu", 29, 63.546, 25.1, 0.50, {{8.979, 7.8}, {0, 0}}},
    [EL_W] = {"W", 74, 183.84, 69.0, 5.42, {{10.207, 2.4}, {11.544, 1.4}, {12.100, 1.15}, {69.525, 5.0}}},
};

typedef struct material {
    const char *name;
    double rho;        /* g/cm^3 */
    int n;             /* constituents */
    int el[2];
    double count[2];   /* atoms per formula unit */
} material;

static const material materials[APT_MAT_COUNT] = {
    [APT_MAT_VACUUM] = {"vacuum", 0, 0, {0, 0}, {0, 0}},
    [APT_MAT_SIO2] = {"SiO2", 2.20, 2, {EL_SI, EL_O}, {1, 2}}, /* amorphous (PECVD/thermal) oxide */
    [APT_MAT_SI] = {"Si", 2.33, 1, {EL_SI, 0}, {1, 0}},
    [APT_MAT_CU] = {"Cu", 8.96, 1, {EL_CU, 0}, {1, 0}},
    [APT_MAT_W] = {"W", 19.30, 1, {EL_W, 0}, {1, 0}},
};

const char *apt_sim_material_name(apt_material m)
{
    return (unsigned)m < APT_MAT_COUNT ? materials[m].name : "?";
}

double apt_sim_wavelength_m(double energy_keV)
{
    return HC_KEV_M / energy_keV;
}

double apt_sim_delta_electron(double rho_g_cm3, double z_over_a, double wavelength_m)
{
    double n_e = rho_g_cm3 * 1e6 * N_A * z_over_a; /* electrons per m^3 */
    return R_E * wavelength_m * wavelength_m * n_e / (2.0 * M_PI);
}

/* f2 ratio from 8.8 keV to E: E^-2 times the jumps of every edge between them. */
static double f2_scale(const element *e, double keV)
{
    double s = (REF_KEV / keV) * (REF_KEV / keV);
    for (int i = 0; i < 4 && e->edges[i].keV > 0; i++) {
        double k = e->edges[i].keV;
        if (keV > k && REF_KEV < k)
            s *= e->edges[i].jump;
        else if (keV < k && REF_KEV > k)
            s /= e->edges[i].jump;
    }
    return s;
}

/* The 8.8 keV f1 holds in the edge-free window around it; elsewhere the free-electron value with Henke's
   relativistic correction Z* = Z - (Z/82.5)^2.37. */
static double f1_at(const element *e, double keV)
{
    if (keV >= 7.5 && keV < 8.979)
        return e->f1;
    return e->Z - pow(e->Z / 82.5, 2.37);
}

int apt_sim_material_index(apt_material m, double energy_keV, double *delta, double *beta, apt_error *err)
{
    if ((unsigned)m >= APT_MAT_COUNT)
        return apt_err(err, APT_EINVAL, "material %d: unknown", (int)m);
    if (!(energy_keV >= 1.0 && energy_keV <= 100.0))
        return apt_err(err, APT_EINVAL, "physics.energy_keV: %g keV outside the simulator's tables (1..100 keV)",
                       energy_keV);
    const material *mat = &materials[m];
    double lam = apt_sim_wavelength_m(energy_keV), mass = 0, f1 = 0, f2 = 0;
    for (int i = 0; i < mat->n; i++) {
        const element *e = &elements[mat->el[i]];
        mass += mat->count[i] * e->A;
        f1 += mat->count[i] * f1_at(e, energy_keV);
        f2 += mat->count[i] * e->f2 * f2_scale(e, energy_keV);
    }
    double k = 0;
    if (mat->n) /* formula units per m^3 times r_e lambda^2 / (2 pi) */
        k = R_E * lam * lam / (2.0 * M_PI) * (mat->rho * 1e6 * N_A / mass);
    if (delta)
        *delta = k * f1;
    if (beta)
        *beta = k * f2;
    return APT_OK;
}
