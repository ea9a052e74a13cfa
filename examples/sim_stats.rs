//! Temporary probe: statistics of simulated catalogue stars.
use sedflow::likelihood::NoiseModel;
use sedflow::physics::ForwardModel;
use sedflow::prior::*;
use sedflow::simulate::*;
fn main() {
    let fm = ForwardModel::embedded_raw();
    let prior = Prior::new(
        fm,
        if std::env::args().any(|a| a == "train") {
            PriorConfig::training()
        } else {
            PriorConfig::default()
        },
    );
    let noise = NoiseModel::default_for(fm);
    let sim = Simulator::new(fm, &prior, &noise, SimulatorConfig::default()).unwrap();
    let mut rng = sedflow::util::rng::Rng::new(1);
    let (mut acc, mut tot) = (0, 0);
    for _ in 0..20000 {
        tot += 1;
        if sim.simulate_one(&mut rng, 0).is_some() {
            acc += 1;
        }
    }
    println!("acceptance {:.3}", acc as f64 / tot as f64);
    let s = sim.simulate_many(20000, 2);
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[((v.len() - 1) as f64 * p) as usize]
    };
    let mut teff: Vec<f64> = s.iter().map(|x| x.theta.teff).collect();
    let mut logg: Vec<f64> = s.iter().map(|x| x.theta.logg).collect();
    let mut d: Vec<f64> = s.iter().map(|x| x.theta.distance).collect();
    let mut av: Vec<f64> = s.iter().map(|x| x.theta.av).collect();
    let mut nb: Vec<f64> = s.iter().map(|x| x.obs.phot.len() as f64).collect();
    for (n, v) in [
        ("teff", &mut teff),
        ("logg", &mut logg),
        ("dist", &mut d),
        ("av", &mut av),
        ("nbands", &mut nb),
    ] {
        println!(
            "{n}: p05 {:.2} p25 {:.2} p50 {:.2} p75 {:.2} p95 {:.2}",
            pct(v, 0.05),
            pct(v, 0.25),
            pct(v, 0.5),
            pct(v, 0.75),
            pct(v, 0.95)
        );
    }
    let giants = s.iter().filter(|x| x.theta.logg < 3.5).count();
    let plx = s.iter().filter(|x| x.obs.parallax.is_some()).count();
    println!(
        "giants {:.3} parallax {:.3}",
        giants as f64 / s.len() as f64,
        plx as f64 / s.len() as f64
    );
}
