"""Copy the transmission curves sedflow uses from the `speclite` package into models/filters/.

The forward model is built from models/filters/bands.toml plus one CSV per band
(wavelength in Angstrom, photon-counting response).  Adding a survey band later is a data
change: put its curve here, add an entry to bands.toml and rerun
scripts/build_forward_model.py.  This script only (re)creates the speclite-derived curves.

Usage: python scripts/import_filters.py   (pinned versions: scripts/requirements.txt)
"""
import pathlib
import numpy as np
import speclite
import speclite.filters as sf

OUT = pathlib.Path(__file__).resolve().parent.parent / "models" / "filters"

# sedflow band name -> (speclite name, photometric system, survey)
BANDS = [
    ("gaia_g", "gaiadr3-G", "vega", "Gaia DR3"),
    ("gaia_bp", "gaiadr3-BP", "vega", "Gaia DR3"),
    ("gaia_rp", "gaiadr3-RP", "vega", "Gaia DR3"),
    ("gaia_dr2_g", "gaiadr2-G", "vega", "Gaia DR2"),
    ("gaia_dr2_bp", "gaiadr2-BP", "vega", "Gaia DR2"),
    ("gaia_dr2_rp", "gaiadr2-RP", "vega", "Gaia DR2"),
    ("tmass_j", "twomass-J", "vega", "2MASS"),
    ("tmass_h", "twomass-H", "vega", "2MASS"),
    ("tmass_ks", "twomass-Ks", "vega", "2MASS"),
    ("wise_w1", "wise2010-W1", "vega", "WISE"),
    ("wise_w2", "wise2010-W2", "vega", "WISE"),
    ("ps1_g", "panstarrs-g", "ab", "Pan-STARRS1"),
    ("ps1_r", "panstarrs-r", "ab", "Pan-STARRS1"),
    ("ps1_i", "panstarrs-i", "ab", "Pan-STARRS1"),
    ("ps1_z", "panstarrs-z", "ab", "Pan-STARRS1"),
    ("ps1_y", "panstarrs-y", "ab", "Pan-STARRS1"),
    ("sdss_u", "sdss2010-u", "ab", "SDSS"),
    ("sdss_g", "sdss2010-g", "ab", "SDSS"),
    ("sdss_r", "sdss2010-r", "ab", "SDSS"),
    ("sdss_i", "sdss2010-i", "ab", "SDSS"),
    ("sdss_z", "sdss2010-z", "ab", "SDSS"),
    ("lsst_u", "lsst2023-u", "ab", "LSST"),
    ("lsst_g", "lsst2023-g", "ab", "LSST"),
    ("lsst_r", "lsst2023-r", "ab", "LSST"),
    ("lsst_i", "lsst2023-i", "ab", "LSST"),
    ("lsst_z", "lsst2023-z", "ab", "LSST"),
    ("lsst_y", "lsst2023-y", "ab", "LSST"),
]

MAX_POINTS = 1500  # curves sampled finer than this are resampled (linear) to keep the repo small


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    toml = [
        "# Band registry of the sedflow forward model: one entry per band, in id order.",
        "# Ids are stable: append new bands at the end, never renumber.",
        "# curve: CSV in this folder, columns wavelength_angstrom,response (photon counting).",
        "# system: 'vega' (zero point = CALSPEC alpha_lyr_stis_011) or 'ab' (3631 Jy).",
        f"# Curves copied from speclite {speclite.__version__} by scripts/import_filters.py.",
        "",
    ]
    for band_id, (name, sl_name, system, survey) in enumerate(BANDS):
        f = sf.load_filter(sl_name)
        wave = np.asarray(f.wavelength, dtype=float)
        resp = np.asarray(f.response, dtype=float)
        if len(wave) > MAX_POINTS:
            fine = np.linspace(wave[0], wave[-1], MAX_POINTS)
            resp = np.interp(fine, wave, resp)
            wave = fine
        path = OUT / f"{name}.csv"
        with open(path, "w") as fh:
            fh.write("wavelength_angstrom,response\n")
            for w, r in zip(wave, resp):
                fh.write(f"{w:.3f},{r:.6e}\n")
        desc = str(f.meta.get("description", "")).replace('"', "'").replace("\\", "/")
        desc = " ".join(desc.split())[:160]
        toml += [
            "[[band]]",
            f"id = {band_id}",
            f'name = "{name}"',
            f'system = "{system}"',
            f'survey = "{survey}"',
            f'curve = "{name}.csv"',
            f'source = "speclite {sl_name}: {desc}"',
            "",
        ]
    (OUT / "bands.toml").write_text("\n".join(toml))
    print(f"wrote {len(BANDS)} curves to {OUT}")


if __name__ == "__main__":
    main()
