"""Reads a `sedflow run` output directory the ways docs/outputs.md shows, and checks that
each reader sees exactly the posterior table: pyarrow.dataset, polars.scan_parquet and
DuckDB over the whole directory, astropy (units and descriptions) on one file.

Usage: check_outputs.py OUTPUT_DIR EXPECTED_ROWS KEPT_COLUMNS(comma-separated)
Run by tests/outputs.rs with the pinned readers of scripts/test.sh.
"""

import glob
import os
import sys
import warnings

import astropy.units as u
import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from astropy.table import Table

out, rows, kept = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
files = sorted(glob.glob(os.path.join(out, "*.parquet")))
assert len(files) >= 2, files
schema = pq.read_schema(files[0])
names = schema.names
assert names[: len(["source_id"])] == ["source_id"], names
assert names[-len(kept):] == kept, names
assert not any(pa.types.is_list(f.type) for f in schema), "sample columns in the posterior table"


def same_table(label, n, cols):
    assert n == rows, f"{label}: {n} rows, expected {rows}"
    assert list(cols) == names, f"{label}: columns {list(cols)} != {names}"


# pyarrow.dataset over the directory
t = ds.dataset(out, format="parquet").to_table()
same_table("pyarrow.dataset", t.num_rows, t.column_names)
assert t.column("source_id").null_count == 0

# polars: the directory, and a recursive glob
for src in (out, os.path.join(out, "**", "*.parquet")):
    df = pl.scan_parquet(src).collect()
    same_table(f"polars.scan_parquet({src!r})", df.height, df.columns)

# DuckDB: recursive glob over the output directory
con = duckdb.connect()
glob_sql = os.path.join(out, "**", "*.parquet").replace("'", "''")
n = con.execute(f"SELECT count(*) FROM read_parquet('{glob_sql}')").fetchall()[0][0]
cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{glob_sql}')").fetchall()]
same_table("duckdb read_parquet('out/**/*.parquet')", n, cols)

# the samples tables are beside the output, the same rows, one list column per parameter
st = ds.dataset(out.rstrip("/") + ".samples", format="parquet").to_table()
assert st.num_rows == rows, st.num_rows
assert pa.types.is_list(st.schema.field("teff").type)

# astropy: units and descriptions of every column
with warnings.catch_warnings():
    warnings.simplefilter("error")  # no guessed string lengths, no unknown units
    at = Table.read(files[0], format="parquet")
expect_units = {
    "teff_p50": u.K,
    "logg_p16": u.dex,
    "mh_mean": u.dex,
    "av_p84": u.mag,
    "distance_p50": u.pc,
    "radius_p50": u.R_sun,
    "mass_p50": u.M_sun,
    "luminosity_p50": u.L_sun,
    "abs_g_p50": u.mag,
    "ag_p50": u.mag,
    "abp_p16": u.mag,
    "arp_p84": u.mag,
    "ebpminrp_p50": u.mag,
    "ra": u.deg,
    "phot_g_mean_mag": u.mag,
}
for c, unit in expect_units.items():
    assert at[c].unit == unit, f"astropy: {c} has unit {at[c].unit!r}, expected {unit}"
for c in ("rv_p50", "flags", "n_eff", "source_id", "designation"):
    assert at[c].unit is None, f"astropy: {c} has unit {at[c].unit!r}"
for c in at.colnames:
    assert at[c].description, f"astropy: {c} has no description"
assert "effective temperature" in at["teff_p50"].description
assert "sedflow.flags" in at.meta, at.meta.keys()
assert len(at) == pq.read_metadata(files[0]).num_rows
print("readers: all checks passed:", len(files), "files,", rows, "rows,", len(names), "columns")
