// Throwaway dev tool (not committed): mine a file, print id<TAB>final template per line and CPU time.
use daytwo_detect::miner::Miner;
use std::io::{BufRead, Write};
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let data = std::fs::read(&path).unwrap();
    let lines: Vec<String> = data.split(|&b| b == b'\n').map(|l| String::from_utf8_lossy(l).into_owned()).collect();
    let mut m = Miner::default();
    let cpu = || std::fs::read_to_string("/proc/thread-self/schedstat").unwrap().split_whitespace().next().unwrap().parse::<f64>().unwrap() / 1e9;
    let t0 = cpu();
    let ids: Vec<_> = lines.iter().map(|l| m.add(l).id).collect();
    let secs = cpu() - t0;
    eprintln!("lines={} secs={:.3} lines/s={:.0} clusters={}", lines.len(), secs, lines.len() as f64 / secs, m.len());
    if std::env::args().nth(2).is_some() {
        let out = std::io::stdout();
        let mut o = std::io::BufWriter::new(out.lock());
        for id in ids {
            let r = m.resolve(id).unwrap_or(id);
            writeln!(o, "{}\t{}", r, m.template(r).unwrap_or_default()).unwrap();
        }
    }
    let _ = std::io::stdin().lock().lines();
}
