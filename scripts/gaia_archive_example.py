"""Split a wide catalogue into tables laid out like the Gaia archive's (issue 23).

    python scripts/gaia_archive_example.py examples/catalogue.parquet examples/gaia-archive \
        --wide tests/fixtures/gaia_archive_wide.parquet

Writes, with the archive's table and column names and in mixed formats:
  gaia_source.parquet                          source_id, astrometry, G/BP/RP (+ every column
                                               that is not 2MASS, AllWISE or Pan-STARRS)
  tmass_psc_xsc_best_neighbour.csv.gz          source_id, original_ext_source_id (designation)
  tmass_original_valid.ecsv.gz                 designation, j_m, j_msigcom, h_m, ..., ph_qual
  allwise_best_neighbour.parquet               source_id, original_ext_source_id (designation)
  allwise_original_valid.csv.gz                designation, w1mpro, w1mpro_error, ..., cc_flags
  panstarrs1_best_neighbour.ecsv.gz            source_id, original_ext_source_id (obj_id)
  panstarrs1_original_valid.parquet            obj_id, g_mean_psf_mag, ..._error, ...

About 5% of the stars are missing from each best-neighbour table, and a few source_ids
appear twice in each (ambiguous). `--wide` writes the same stars pre-joined into one table,
the reference `sedflow run` must reproduce: the missing and ambiguous stars have those
columns null. Quality flags are 'AAA' / '0000' except for a few stars (so that the masks act).
Deterministic (seeded).
"""

import argparse
import gzip
import io
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

TMASS = ["j_m", "j_msigcom", "h_m", "h_msigcom", "ks_m", "ks_msigcom"]
WISE = ["w1mpro", "w1mpro_error", "w2mpro", "w2mpro_error"]
PS1 = [f"{b}_mean_psf_mag{e}" for b in "grizy" for e in ("", "_error")]

ECSV_TYPES = {
    pa.int64(): "int64",
    pa.int32(): "int32",
    pa.float64(): "float64",
    pa.float32(): "float32",
    pa.string(): "string",
}


def csv_text(t: pa.Table) -> str:
    buf = io.BytesIO()
    pacsv.write_csv(t, buf, pacsv.WriteOptions(quoting_style="needed"))
    return buf.getvalue().decode()


def write_csv_gz(t: pa.Table, path: str) -> None:
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        f.write(csv_text(t).encode())


def write_ecsv_gz(t: pa.Table, path: str) -> None:
    """ECSV 1.0 as the archive's bulk files: block-style YAML header, ',' delimiter, null."""
    head = ["# %ECSV 1.0", "# ---", "# delimiter: ','", "# datatype:"]
    for f in t.schema:
        head += [f"# - name: {f.name}", f"#   datatype: {ECSV_TYPES[f.type]}"]
    body = csv_text(t).splitlines()
    names, rows = body[0], body[1:]
    # pyarrow writes nulls as empty fields; the archive writes `null`
    rows = [",".join("null" if v == "" else v for v in r.split(",")) for r in rows]
    text = "\n".join(head + [names.replace('"', "")] + rows) + "\n"
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        f.write(text.encode())


def flat(t: pa.Table, out_dir: str, rng, missing: float) -> None:
    """The memory benchmark's layout: gaia_source plus three tables keyed by source_id
    (2MASS Parquet, AllWISE CSV.gz, Pan-STARRS ECSV.gz), each missing a share of the stars
    and shuffled, and the same stars pre-joined (wide.parquet)."""
    n = t.num_rows
    os.makedirs(out_dir, exist_ok=True)
    ext = [c for c in TMASS + WISE + PS1 if c in t.column_names]
    pq.write_table(t.select([c for c in t.column_names if c not in ext]),
                   f"{out_dir}/gaia_source.parquet", row_group_size=65536)
    wide = t
    for name, cols, fmt in (("tmass", TMASS, "parquet"), ("allwise", WISE, "csv.gz"),
                            ("ps1", PS1, "ecsv.gz")):
        cols = [c for c in cols if c in t.column_names]
        keep = rng.random(n) >= missing
        rows = rng.permutation(np.flatnonzero(keep))
        sub = t.select(["source_id"] + cols).take(pa.array(rows))
        path = f"{out_dir}/{name}.{fmt}"
        if fmt == "parquet":
            pq.write_table(sub, path, row_group_size=65536)
        elif fmt == "csv.gz":
            write_csv_gz(sub, path)
        else:
            write_ecsv_gz(sub, path)
        for c in cols:
            i = wide.column_names.index(c)
            wide = wide.set_column(i, c, pc.if_else(pa.array(keep), wide[c], pa.nulls(n, wide[c].type)))
    pq.write_table(wide, f"{out_dir}/wide.parquet", row_group_size=65536)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("wide_in")
    ap.add_argument("out_dir")
    ap.add_argument("--wide", help="write the pre-joined reference table here")
    ap.add_argument("--seed", type=int, default=23)
    ap.add_argument("--missing", type=float, default=0.05)
    ap.add_argument("--ambiguous", type=int, default=3)
    ap.add_argument("--flat", action="store_true",
                    help="the memory benchmark's layout (scripts/join_memory.sh)")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    t = pq.read_table(a.wide_in)
    if a.flat:
        flat(t, a.out_dir, rng, a.missing)
        return
    n = t.num_rows
    sid = t["source_id"].to_numpy()
    os.makedirs(a.out_dir, exist_ok=True)

    # quality flags: mostly good, a few bad characters
    ph = np.array(["AAA"] * n, dtype=object)
    cc = np.array(["0000"] * n, dtype=object)
    for k in rng.choice(n, size=max(2, n // 8), replace=False):
        ph[k] = rng.choice(["AUA", "DAA", "AAE"])
        cc[k] = rng.choice(["d000", "0h00"])
    t = t.append_column("ph_qual", pa.array(list(ph), pa.string()))
    t = t.append_column("cc_flags", pa.array(list(cc), pa.string()))

    ext = [c for c in TMASS + WISE + PS1 + ["ph_qual", "cc_flags"] if c in t.column_names]
    gaia = t.select([c for c in t.column_names if c not in ext])
    pq.write_table(gaia, f"{a.out_dir}/gaia_source.parquet", row_group_size=64)

    designations = {
        "tmass": np.array([f"J{s % 10**8:08d}+{(s // 7) % 10**7:07d}" for s in sid], dtype=object),
        "allwise": np.array([f"J{s % 10**9:09d}.{(s // 3) % 10**6:06d}" for s in sid], dtype=object),
        "ps1": (sid % 10**15 + 10**16).astype(np.int64),
    }
    wide = t
    specs = [
        ("tmass", "tmass_psc_xsc_best_neighbour", "tmass_original_valid", "designation",
         TMASS + ["ph_qual"], "csv.gz", "ecsv.gz"),
        ("allwise", "allwise_best_neighbour", "allwise_original_valid", "designation",
         WISE + ["cc_flags"], "parquet", "csv.gz"),
        ("ps1", "panstarrs1_best_neighbour", "panstarrs1_original_valid", "obj_id",
         PS1, "ecsv.gz", "parquet"),
    ]
    for key, bn_name, ext_name, ext_key, cols, bn_fmt, ext_fmt in specs:
        cols = [c for c in cols if c in t.column_names]
        ids = designations[key]
        present = rng.random(n) >= a.missing
        rows = np.flatnonzero(present)
        amb = rng.choice(rows, size=a.ambiguous, replace=False)
        # the best-neighbour table: one row per present star, a second one for ambiguous ones
        bn_rows = np.concatenate([rows, amb])
        bn_target = np.concatenate([ids[rows], ids[(amb + 1) % n]])
        order = rng.permutation(len(bn_rows))
        bn = pa.table({
            "source_id": pa.array(sid[bn_rows][order], pa.int64()),
            "original_ext_source_id": pa.array(list(bn_target[order])),
            "number_of_neighbours": pa.array(np.ones(len(bn_rows), np.int32)),
        })
        # the external table: every star's row (the catalogue holds more than the match)
        ext_t = pa.table([pa.array(list(ids))] + [t[c] for c in cols], names=[ext_key] + cols)
        ext_t = ext_t.take(pa.array(rng.permutation(n)))
        for table, name, fmt in ((bn, bn_name, bn_fmt), (ext_t, ext_name, ext_fmt)):
            path = f"{a.out_dir}/{name}.{fmt}"
            if fmt == "parquet":
                pq.write_table(table, path, row_group_size=64)
            elif fmt == "csv.gz":
                write_csv_gz(table, path)
            else:
                write_ecsv_gz(table, path)
        # the reference: those columns null where the star is missing or ambiguous
        keep = present.copy()
        keep[amb] = False
        mask = pa.array(keep)
        for c in cols:
            i = wide.column_names.index(c)
            nulls = pa.nulls(n, wide[c].type)
            wide = wide.set_column(i, c, pc.if_else(mask, wide[c], nulls))
    if a.wide:
        pq.write_table(wide, a.wide, row_group_size=64)


if __name__ == "__main__":
    main()
