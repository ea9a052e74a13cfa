"""Compare scripts/g23.py with the reference implementation in the dust-extinction package."""
import sys
import numpy as np
import astropy.units as u
from dust_extinction.parameter_averages import G23
sys.path.insert(0, __file__.rsplit("/", 1)[0])
from g23 import g23_alav

wave = np.logspace(np.log10(0.0912), np.log10(32.0), 4000)
worst = 0.0
for rv in [2.3, 2.5, 3.1, 4.0, 5.0, 5.6]:
    ref = G23(Rv=rv)(wave * u.micron)
    ours = g23_alav(wave, rv)
    worst = max(worst, float(np.max(np.abs(ours - ref))))
    print(f"R_V={rv}: max |ours - dust_extinction| = {np.max(np.abs(ours - ref)):.2e}")
print(f"worst {worst:.2e}")
sys.exit(0 if worst < 1e-6 else 1)
