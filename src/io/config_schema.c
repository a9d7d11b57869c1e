/* config_schema.c - the table of every aptomod configuration key: type, default (YAML flow text, parsed by the
 * same code as the file), range and a one-line doc. The loader, --set, the dump and configs/aptomod.yaml's
 * completeness test all read this table; keep sections contiguous and a union right before the keys below it. */
#include <string.h>

#include "aptomo/config.h"

#define S(k, d, fl, doc) {k, APT_CFG_STR, d, 0, 0, fl, NULL, doc}
#define I(k, d, lo, hi, doc) {k, APT_CFG_INT, d, lo, hi, 0, NULL, doc}
#define F(k, d, lo, hi, fl, doc) {k, APT_CFG_FLOAT, d, lo, hi, fl, NULL, doc}
#define B(k, d, doc) {k, APT_CFG_BOOL, d, 0, 0, 0, NULL, doc}
#define E(k, d, ch, doc) {k, APT_CFG_ENUM, d, 0, 0, 0, ch, doc}
#define SL(k, d, lo, hi, fl, doc) {k, APT_CFG_STR_LIST, d, lo, hi, fl, NULL, doc}
#define FL(k, d, lo, hi, fl, doc) {k, APT_CFG_FLOAT_LIST, d, lo, hi, fl, NULL, doc}
#define U(k, d, doc) {k, APT_CFG_UNION, d, 0, 0, APT_CFG_NONEMPTY, NULL, doc}

static const apt_config_key keys[] = {
    SL("detector.endpoints", "[\"tcp://127.0.0.1:9999\"]", 1, 64, APT_CFG_NONEMPTY,
       "detector PUSH endpoints; aptomod connects one PULL socket to each"),
    E("detector.protocol", "auto", "auto|v1|v2", "stream interface: auto-detect per message, v1 (JSON), v2 (CBOR)"),
    S("detector.channel", "\"\"", 0,
      "v2 channel to use; \"\" = first of the start message's channels, else threshold_1"),
    I("detector.crop", "128", 8, 4096, "crop size in pixels (square) around the beam centre"),
    FL("detector.beam_center", "[]", 0, 2, APT_CFG_LEN_0_OR_MAX,
       "[y, x] in pixels; [] = from the start message, else the frame centre"),
    I("detector.rcvhwm", "200000", 1, 100000000, "ZMQ receive high-water mark per PULL socket (messages)"),
    F("detector.series_timeout_s", "30", 0.1, 86400, 0,
      "a series with no message for this long completes with the data it has (s)"),
    I("detector.max_frames_per_series", "1000000", 1, 100000000, "frames of one series beyond this are dropped"),
    I("detector.max_frame_pixels", "16777216", 64, 268435456, "height*width bound checked before allocation"),
    I("detector.max_message_bytes", "67108864", 1024, 1073741824, "larger messages are counted and dropped (bytes)"),

    I("ingest.decode_threads", "0", 0, 256, "decode worker threads; 0 = number of cores"),
    I("ingest.queue_frames", "65536", 1, 16777216, "bounded queue between receive and decode (frames)"),

    S("metadata.endpoint", "\"\"", 0, "scan-metadata PULL endpoint; \"\" = off"),
    B("metadata.bind", "false", "true = bind metadata.endpoint, false = connect to it"),
    F("metadata.grace_s", "5", 0, 3600, 0,
      "a finished series without angle/positions waits this long for late scan metadata; 0 = off (s)"),

    S("results.endpoint", "\"tcp://*:9998\"", APT_CFG_NONEMPTY, "results PUB socket, bound"),
    I("results.sndhwm", "1000", 1, 10000000, "PUB send high-water mark; slow subscribers lose messages beyond it"),
    F("results.status_period_s", "1.0", 0.01, 3600, 0, "period of the status message (s)"),
    S("results.curve_secret_key", "\"\"", 0,
      "CURVE for the results socket: the server's key pair file (aptomo keygen, mode 0600); \"\" = off"),
    S("results.curve_clients", "\"\"", 0,
      "with CURVE: authorised subscribers' public keys (file, or directory of *.pub); re-read on SIGHUP"),

    S("control.endpoint", "\"tcp://127.0.0.1:9997\"", APT_CFG_NONEMPTY, "control REP socket, bound"),
    S("control.curve_secret_key", "\"\"", 0,
      "CURVE for the control socket: the server's key pair file (aptomo keygen, mode 0600); \"\" = off"),
    S("control.curve_clients", "\"\"", 0,
      "with CURVE: authorised control clients' public keys (file, or directory of *.pub); re-read on SIGHUP"),

    I("web.port", "0", 0, 65535, "dashboard (HTTP) port; 0 = no dashboard"),
    S("web.address", "\"127.0.0.1\"", APT_CFG_NONEMPTY,
      "numeric IPv4 or IPv6 address the dashboard listens on; 0.0.0.0 or :: = every interface (no access control)"),
    I("web.max_clients", "16", 1, 1024, "concurrent dashboard connections (each event stream is one); more wait"),
    I("web.stream_events", "512", 16, 1000000,
      "events kept for live streams that are behind; one further behind is sent a fresh snapshot instead"),
    F("web.timeout_s", "30", 1, 3600, 0, "a dashboard connection that stalls (reads nothing) this long is closed (s)"),

    E("compute.backend", "auto", "auto|cpu|gpu",
      "where the ptychography model, the tomography projector and the network run: gpu when present (auto)"),
    F("physics.energy_keV", "8.8", 0.1, 1000, 0, "photon energy (keV)"),
    F("physics.detector_distance_m", "1.92", 0.001, 100, 0, "sample to detector distance (m)"),
    F("physics.pixel_size_m", "75e-6", 1e-7, 1e-2, 0, "detector pixel size (m)"),
    I("physics.slices", "5", 1, 256, "multislice slices through the sample"),
    I("physics.modes", "12", 1, 64, "probe modes (mixed-state ptychography)"),
    I("physics.iterations", "2", 1, 16, "per-angle reconstruction iterations (passes over the positions)"),
    B("physics.reconstruct", "true", "reconstruct each angle (false: only count and report what arrives)"),
    I("physics.batches", "16", 1, 4096, "spatially spread mini-batches per pass (LSQML-style grouping)"),
    U("physics.probe", "{}", "HDF5 file with /entry/probe/modes, or a mapping: the inline optics model below"),
    E("physics.probe.model", "zoneplate", "zoneplate|gaussian", "inline probe: zone-plate focus or Gaussian beam"),
    F("physics.probe.zp_diameter_m", "160e-6", 1e-6, 1e-2, 0, "zone-plate diameter (m)"),
    F("physics.probe.outer_zone_m", "50e-9", 1e-9, 1e-5, 0, "outermost zone width (m); sets the focal length"),
    F("physics.probe.defocus_m", "100e-6", -1e-2, 1e-2, 0, "sample distance from focus, + downstream (m)"),
    F("physics.probe.central_stop", "0.5", 0, 0.99, 0, "central-stop diameter as a fraction of the zone plate"),
    F("physics.probe.coherence", "0.3", 0, 1, APT_CFG_MIN_OPEN,
      "spatial coherence fraction in (0,1]: Gaussian-Schell source -> mode occupancies"),

    I("tomo.n_star", "29", 1, 100000, "angles after which the refined volume is first published (N*)"),
    I("tomo.publish_every", "4", 1, 100000, "publish the volume again every this many angles after N*"),
    I("tomo.nz", "0", 0, 4096, "volume depth in voxels; 0 = auto (the projection width)"),
    S("tomo.reference", "\"\"", 0,
      "reference volume (FILE with /exchange/data, or FILE.h5:/DATASET) for the metrics; \"\" = none"),
    F("tomo.converge_pcc", "0.999", 0, 1, 0, "volume counts as unchanged when PCC with the previous one is above"),
    I("tomo.converge_updates", "3", 1, 1000, "consecutive unchanged volumes before stop (reason converged)"),
    FL("tomo.grid", "[280, 128, 128]", 3, 3, 0, "[Z, Y, X] voxels of the sample grid the Approximant is built on"),
    FL("tomo.voxel_size_m", "[14e-9, 28e-9, 28e-9]", 3, 3, 0, "[vz, vy, vx] voxel size of that grid (m)"),
    E("tomo.baseline", "fbp", "none|fbp|sart",
      "classical reconstruction of the same angles published beside the Approximant (topic baseline)"),

    S("model.weights", "\"\"", 0, "U-net weights (.safetensors); \"\" = no network, publish the Approximant"),
    I("model.batch", "1", 1, 256, "patches per network call (bounds memory)"),

    S("storage.dir", "\"/var/lib/aptomo\"", APT_CFG_NONEMPTY, "results, crash-safe state, queued angles and spool; created on start"),
    I("storage.queue_memory_mb", "4096", 0, 1048576,
      "complete angles waiting for reconstruction are kept in memory up to this, then under storage.dir/queue"),
    B("storage.spool_frames", "false", "write every received frame, bit-exact, to HDF5 under storage.dir"),
    I("storage.spool_min_free_mb", "512", 0, 1000000000,
      "spooling stops while storage.dir's file system has less free space than this (MiB); 0 = no check"),

    FL("sim.grid", "[280, 128, 128]", 3, 3, 0, "aptomo simulate: phantom grid [Z, Y, X] in voxels (integers)"),
    FL("sim.voxel_size_m", "[14e-9, 14e-9, 14e-9]", 3, 3, 0, "aptomo simulate: voxel size [z, y, x] (m)"),
    I("sim.angles", "37", 1, 100000, "aptomo simulate: tomographic angles, evenly over +-sim.range_deg"),
    F("sim.range_deg", "70.4", 0, 89.9, 0, "aptomo simulate: largest tilt (deg)"),
    F("sim.step_m", "100e-9", 1e-9, 1e-3, 0, "aptomo simulate: fly-scan raster step (m)"),
    F("sim.jitter_m", "15e-9", 0, 1e-4, 0, "aptomo simulate: uniform position jitter +- this, recorded (m)"),
    F("sim.photons_per_frame", "1e6", 0, 1e15, APT_CFG_MIN_OPEN, "aptomo simulate: photons per frame (all modes)"),
    E("sim.dtype", "uint16", "uint16|uint32", "aptomo simulate: frame pixel type (counts saturate at max - 1)"),
    I("sim.seed", "1", 0, 9007199254740991.0, "aptomo simulate: seed of every random choice"),
    I("sim.layers", "6", 1, 16, "aptomo simulate: metal layers of the IC phantom"),
    B("sim.substrate", "true", "aptomo simulate: Si substrate slab (with W contacts) at the high-z side"),
    F("sim.pitch_scale", "1", 0.25, 4, 0, "aptomo simulate: the phantom's line pitches (and widths, cuts) x this"),

    E("log.level", "info", "debug|info|warn|error", "least severe log level written to stderr"),
};

size_t apt_config_key_count(void)
{
    return sizeof keys / sizeof keys[0];
}

const apt_config_key *apt_config_key_at(size_t i)
{
    return i < apt_config_key_count() ? &keys[i] : NULL;
}

const apt_config_key *apt_config_key_find(const char *key)
{
    if (!key)
        return NULL;
    for (size_t i = 0; i < apt_config_key_count(); i++)
        if (!strcmp(keys[i].key, key))
            return &keys[i];
    return NULL;
}
