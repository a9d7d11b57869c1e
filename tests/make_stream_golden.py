#!/usr/bin/python3
"""make_stream_golden.py - writes tests/data/stream_*.{cbor,bin} and tests/data/stream_expected.json: Eiger stream
messages as a detector would send them, built with independent tools (cbor2, json, the bitshuffle package, python
lz4), never with aptomo's own encoders. Run once by hand (Debian's /usr/bin/python3); the outputs are committed and
tests/test_stream_golden.c checks every field aptomo decodes from them. Deterministic: re-running gives the same
bytes. v1 multipart messages are stored in the container of tests/data/README.md."""
import json
import os
import struct
import zlib

import bitshuffle
import cbor2
import lz4.block
import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
W, H = 48, 32  # frame width (x) and height (y)
DTYPES = {1: np.uint8, 2: np.uint16, 4: np.uint32}
TYPED_TAG = {1: 64, 2: 69, 4: 70}


def pattern(channel, elem, image_id):
    """Channel-, type- and frame-dependent pixels that use the full element width."""
    y, x = np.mgrid[0:H, 0:W].astype(np.uint64)
    v = (x * 11 + y * 173 + channel * 2039 + image_id * 97) * (65537 if elem == 4 else 1)
    return (v % (1 << (8 * elem))).astype(DTYPES[elem])


def bslz4(arr):
    """bitshuffle HDF5-filter framing: BE u64 raw bytes, BE u32 block bytes, then the package's (len + LZ4) blocks."""
    elem = arr.dtype.itemsize
    block_elems = max(128, (8192 // elem) // 8 * 8)  # bitshuffle's default block size
    body = bitshuffle.compress_lz4(arr.reshape(-1), 0).tobytes()
    return struct.pack(">QI", arr.nbytes, block_elems * elem) + body


def h5lz4(raw):
    """HDF5 LZ4 filter framing with one block (the filter's 1 GiB default block exceeds the frame)."""
    comp = lz4.block.compress(raw, store_size=False)
    if len(comp) >= len(raw):
        comp = raw  # stored raw: block length equals its raw size
    return struct.pack(">QI", len(raw), len(raw)) + struct.pack(">I", len(comp)) + comp


def crc(b):
    return zlib.crc32(b) & 0xFFFFFFFF


def write_v1(name, parts):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(struct.pack("<I", len(parts)))
        for p in parts:
            f.write(struct.pack("<I", len(p)) + p)


def write_v2(name, obj, self_describe=True):
    data = cbor2.dumps(cbor2.CBORTag(55799, obj) if self_describe else obj)
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def jdump(o):
    return json.dumps(o, separators=(",", ":")).encode()


def multidim(arr, compression):
    """tag 40 [[height, width], tag 64/69/70 (bytes | tag 56500 [alg, elem, bytes])]"""
    elem = arr.dtype.itemsize
    raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
    if compression == "bslz4":
        blob = bslz4(arr)
        data = cbor2.CBORTag(56500, ["bslz4", elem, blob])
    elif compression == "lz4":
        blob = h5lz4(raw)
        data = cbor2.CBORTag(56500, ["lz4", 0, blob])
    else:
        blob = raw
        data = blob
    return cbor2.CBORTag(40, [[H, W], cbor2.CBORTag(TYPED_TAG[elem], data)]), blob


def px_expect(channel, arr, blob, encoding):
    raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
    return {"channel": channel, "width": W, "height": H, "elem_size": arr.dtype.itemsize, "encoding": encoding,
            "blob_len": len(blob), "blob_crc32": crc(blob), "raw_crc32": crc(raw), "sum": int(arr.sum(dtype=np.uint64))}


CONFIG = {"beam_center_x": 24.5, "beam_center_y": 16.25, "count_time": 0.001, "frame_time": 0.002,
          "detector_distance": 1.25, "x_pixel_size": 7.5e-05, "y_pixel_size": 7.5e-05, "photon_energy": 8048.0,
          "nimages": 4, "ntrigger": 2, "bit_depth_image": 16, "x_pixels_in_detector": W, "y_pixels_in_detector": H,
          "countrate_correction_count_cutoff": 60000, "description": "Dectris EIGER2 Si 500K", "detector_number": "E-1",
          "sensor_thickness": 0.00045, "software_version": "1.8.0", "auto_summation": True,
          "data_collection_date": "2024-01-01T00:00:00.000+01:00"}
EXPECT_CONFIG = {"present": True, "beam_center_x": 24.5, "beam_center_y": 16.25, "width": W, "height": H,
                 "n_images": 8, "elem_size": 2, "energy_eV": 8048.0, "distance_m": 1.25, "pixel_x_m": 7.5e-05,
                 "pixel_y_m": 7.5e-05, "count_time_s": 0.001, "frame_time_s": 0.002, "saturation": 60000}
EMPTY_CONFIG = {"present": False, "beam_center_x": None, "beam_center_y": None, "width": 0, "height": 0,
                "n_images": 0, "elem_size": 0, "energy_eV": None, "distance_m": None, "pixel_x_m": None,
                "pixel_y_m": None, "count_time_s": None, "frame_time_s": None, "saturation": 0}
SERIES_META = {"angle_deg": 37.5, "positions_m": [[1.5e-06, -2.25e-06], [1.5e-06, 0.0], [3e-06, -2.25e-06],
                                                  [3e-06, 1e-07]]}


def main():
    os.makedirs(OUT, exist_ok=True)
    files = []
    mask = ((np.arange(W * H, dtype=np.uint32).reshape(H, W) % 97) == 0).astype(np.uint32)
    mask[3, 5] = 0x80000000  # a high bit must survive
    mask_raw = mask.astype("<u4").tobytes()

    # ---- v1 start: header_detail none / basic / all, with and without the appendix ----
    appendix = jdump(SERIES_META)
    for detail in ("none", "basic", "all"):
        for with_app in (False, True):
            parts = [jdump({"htype": "dheader-1.0", "series": 5, "header_detail": detail})]
            if detail != "none":
                parts.append(jdump(CONFIG))
            if detail == "all":
                flat = np.linspace(0.9, 1.1, W * H, dtype=np.float32)
                parts += [jdump({"htype": "dflatfield-1.0", "shape": [W, H], "type": "float32"}),
                          flat.astype("<f4").tobytes(),
                          jdump({"htype": "dpixelmask-1.0", "shape": [W, H], "type": "uint32"}), mask_raw,
                          jdump({"htype": "dcountrate_table-1.0", "shape": [2, 1000], "type": "float32"}),
                          np.zeros(2000, dtype="<f4").tobytes()]
            if with_app:
                parts.append(appendix)
            name = "stream_v1_start_%s%s.bin" % (detail, "_app" if with_app else "")
            write_v1(name, parts)
            files.append({"file": name, "version": 1, "type": "start", "series_id": 5, "series_unique_id": "",
                          "header_detail": detail, "config": EXPECT_CONFIG if detail != "none" else EMPTY_CONFIG,
                          "channels": [],
                          "mask": {"channel": "", "width": W, "height": H, "elem_size": 4, "encoding": "none",
                                   "blob_len": len(mask_raw), "blob_crc32": crc(mask_raw)} if detail == "all" else None,
                          "user_json": appendix.decode() if with_app else None,
                          "user_data": SERIES_META if with_app else None})

    # ---- v1 images: each encoding ----
    for k, (enc, elem) in enumerate([("bs16-lz4<", 2), ("bs32-lz4<", 4), ("bs8-lz4<", 1), ("lz4<", 2), ("<", 2),
                                     ("<", 4)]):
        arr = pattern(0, elem, k)
        raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        blob = bslz4(arr) if enc.startswith("bs") else lz4.block.compress(raw, store_size=False) if enc == "lz4<" \
            else raw
        encoding = "bslz4" if enc.startswith("bs") else "lz4" if enc == "lz4<" else "none"
        app = jdump({"pos_m": [1e-06 * k, -2e-06]}) if k % 2 == 0 else None
        parts = [jdump({"htype": "dimage-1.0", "series": 5, "frame": k, "hash": "0" * 32}),
                 jdump({"htype": "dimage_d-1.0", "shape": [W, H], "type": "uint%d" % (8 * elem), "encoding": enc,
                        "size": len(blob)}),
                 blob, jdump({"htype": "dconfig-1.0", "start_time": 1000 * k, "stop_time": 1000 * k + 900,
                              "real_time": 900})]
        if app:
            parts.append(app)
        name = "stream_v1_image_%s_%d.bin" % (encoding, 8 * elem)
        write_v1(name, parts)
        files.append({"file": name, "version": 1, "type": "image", "series_id": 5, "series_unique_id": "",
                      "image_id": k, "pixels": [px_expect("", arr, blob, encoding)],
                      "user_json": app.decode() if app else None,
                      "user_data": json.loads(app) if app else None})

    write_v1("stream_v1_end.bin", [jdump({"htype": "dseries_end-1.0", "series": 5})])
    files.append({"file": "stream_v1_end.bin", "version": 1, "type": "end", "series_id": 5, "series_unique_id": "",
                  "user_json": None, "user_data": None})

    # ---- v2 start: two channels, masks per channel, ignored extras (arm_date tag 0, flatfield, goniometer) ----
    mask2 = (mask ^ 1).astype(np.uint32)
    mk1, _ = multidim(mask, None)
    mk2, _ = multidim(mask2, None)
    flat = np.ones((H, W), dtype="<f4")
    start = {"type": "start", "series_id": 9, "series_unique_id": "golden-9",
             "arm_date": cbor2.CBORTag(0, "2024-01-01T00:00:00Z"), "beam_center_x": 24.5, "beam_center_y": 16.25,
             "channels": ["threshold_1", "threshold_2"], "count_time": 0.001, "countrate_correction_enabled": True,
             "detector_description": "EIGER2 Si 500K", "detector_serial_number": "E-1",
             "detector_translation": [0.0, 0.0, 1.25],
             "flatfield": {"threshold_1": cbor2.CBORTag(40, [[H, W], cbor2.CBORTag(85, flat.tobytes())])},
             "flatfield_enabled": False, "frame_time": 0.002, "goniometer": {"omega": {"increment": 0.1, "start": 0}},
             "image_size_x": W, "image_size_y": H, "image_dtype": "uint16", "incident_energy": 8048.0,
             "incident_wavelength": 1.5406, "number_of_images": 4,
             "pixel_mask": {"threshold_1": mk1, "threshold_2": mk2}, "pixel_mask_enabled": True,
             "pixel_size_x": 7.5e-05, "pixel_size_y": 7.5e-05, "saturation_value": 60000, "sensor_material": "Si",
             "sensor_thickness": 0.00045, "threshold_energy": {"threshold_1": 4024.0, "threshold_2": 6000.0},
             "user_data": SERIES_META, "virtual_pixel_interpolation_enabled": True, "detector_distance": 1.25}
    write_v2("stream_v2_start.cbor", start)
    v2config = dict(EXPECT_CONFIG, n_images=4)
    files.append({"file": "stream_v2_start.cbor", "version": 2, "type": "start", "series_id": 9,
                  "series_unique_id": "golden-9", "config": v2config, "channels": ["threshold_1", "threshold_2"],
                  "mask": {"channel": "threshold_1", "width": W, "height": H, "elem_size": 4, "encoding": "none",
                           "blob_len": len(mask_raw), "blob_crc32": crc(mask_raw)},
                  "mask_threshold_2_crc32": crc(mask2.astype("<u4").tobytes()),
                  "user_json": None, "user_data": SERIES_META})

    # ---- v2 images: two channels, each compression and element size ----
    cases = [("bslz4", 2, True), ("bslz4", 4, True), ("bslz4", 1, True), ("lz4", 2, True), ("none", 4, True),
             ("none", 1, False)]
    for k, (comp, elem, sd) in enumerate(cases):
        data, exp = {}, []
        for c, chname in enumerate(["threshold_1", "threshold_2"]):
            arr = pattern(c, elem, k)
            item, blob = multidim(arr, comp if comp != "none" else None)
            data[chname] = item
            exp.append(px_expect(chname, arr, blob, "h5lz4" if comp == "lz4" else comp))
        user = {"pos_m": [2.5e-07 * k, -1e-06], "note": "frame %d" % k, "flags": [True, None, -3]}
        msg = {"type": "image", "series_id": 9, "series_unique_id": "golden-9", "image_id": 10 + k,
               "real_time": [900, 100000], "series_date": cbor2.CBORTag(0, "2024-01-01T00:00:00Z"),
               "start_time": [1000 * k, 100000], "stop_time": [1000 * k + 900, 100000], "data": data,
               "user_data": user}
        name = "stream_v2_image_%s_%d%s.cbor" % (comp, 8 * elem, "" if sd else "_plain")
        write_v2(name, msg, self_describe=sd)
        files.append({"file": name, "version": 2, "type": "image", "series_id": 9, "series_unique_id": "golden-9",
                      "image_id": 10 + k, "pixels": exp, "user_json": None, "user_data": user})

    write_v2("stream_v2_end.cbor", {"type": "end", "series_id": 9, "series_unique_id": "golden-9"})
    files.append({"file": "stream_v2_end.cbor", "version": 2, "type": "end", "series_id": 9,
                  "series_unique_id": "golden-9", "user_json": None, "user_data": None})

    with open(os.path.join(OUT, "stream_expected.json"), "w") as f:
        json.dump({"width": W, "height": H, "files": files}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
