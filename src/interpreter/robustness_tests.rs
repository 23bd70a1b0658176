//! Odd and random input never makes the interpreter panic, and its answers
//! keep their invariants (offsets inside the cell, error lines inside the
//! cell, blanked code with as many lines as the cell).

use crate::frameworks::Frameworks;

use super::params::Cell;
use super::{complete, inspect, is_complete, parse};

/// xorshift64*: a small deterministic generator, so a failure is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const PIECES: &[&str] = &[
    "%", "%%", "=", ";", ":", ",", " ", "\t", "\n", "\r\n", "\r", "\"\"\"", "'''", "\"", "'", "\\", "#", "!", "(", ")",
    "[", "]", "{", "}", "é", "🚀", "日本", "\u{0}", "\u{feff}", "a", "Z", "0", "9", "-", ".", "/", "@", "%worker", "%ps",
    "%framework", "=tensorflow", "=pytorch", "%cpu", "%memory", "=2Gi", "%gpu", "%env", "%toleration", "NoSchedule",
    "%logs", " --follow", "%jobs", "%module", "%dryrun", "%cleanPolicy", "%nodes", "%image", "%base", "%packages",
    "%pip install", "%%bash", "def f():", "    ", "x = (", "%files", "%volume", "%label", "%secretEnv", "sha256:",
];

fn random_cell(rng: &mut Rng) -> String {
    let n = rng.below(24);
    (0..n).map(|_| PIECES[rng.below(PIECES.len())]).collect()
}

fn check(code: &str, frameworks: &Frameworks) {
    let chars = code.chars().count();
    let lines = code.split('\n').count();
    for default in ["python", "tensorflow", "no-such-framework"] {
        match parse(code, frameworks, default) {
            Ok(Cell::Job(job)) => assert_eq!(job.code.split('\n').count(), lines, "{code:?}"),
            Ok(Cell::Module { code: kept, .. }) => assert_eq!(kept.split('\n').count(), lines, "{code:?}"),
            Ok(Cell::Command(_)) => {}
            Err(e) => {
                assert!((1..=lines).contains(&e.line), "{code:?}: {e}");
                assert!(!e.message.is_empty());
            }
        }
    }
    let _ = is_complete(code);
    for pos in 0..=chars + 2 {
        let c = complete(code, pos, frameworks);
        assert!(c.cursor_start <= c.cursor_end && c.cursor_end <= chars, "{code:?} at {pos}: {c:?}");
        if !c.matches.is_empty() {
            let pos = pos.min(chars);
            assert!(c.cursor_start <= pos && pos <= c.cursor_end, "{code:?} at {pos}: {c:?}");
        }
        let _ = inspect(code, pos, frameworks);
    }
}

#[test]
fn random_cells_never_panic() {
    let frameworks = Frameworks::embedded();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..3000 {
        check(&random_cell(&mut rng), frameworks);
    }
}

#[test]
fn every_prefix_of_realistic_cells_is_handled() {
    let frameworks = Frameworks::embedded();
    let cells = [
        "%framework=tensorflow\n%ps=1;%cpu=1;%memory=2Gi\n%worker=2;%cpu=2;%memory=4Gi\n%cleanPolicy=running\nimport tensorflow as tf\n",
        "# é 🚀\n%toleration=nvidia.com/gpu=x:NoSchedule;%env=A=b=c\ns = \"\"\"\n%worker=2\n\"\"\"\n",
        "%module=utils\ndef f(x):\n    return {'a': [x, (1,\n 2)]}\n",
        "%logs mnist-7f3c --follow\n",
        "%%bash\n!pip install x\n%pip install y\n",
    ];
    for cell in cells {
        let chars: Vec<char> = cell.chars().collect();
        for end in 0..=chars.len() {
            check(&chars[..end].iter().collect::<String>(), frameworks);
        }
    }
}

#[test]
fn long_cells_are_handled() {
    let frameworks = Frameworks::embedded();
    let mut cell = String::from("%framework=tensorflow\n");
    for i in 0..2000 {
        cell.push_str(&format!("x{i} = ({i} % 7)  # \"\"\" '\n"));
    }
    cell.push_str("%worker=2;%cpu=1\n");
    let Ok(Cell::Job(job)) = parse(&cell, frameworks, "python") else { panic!("the cell parses") };
    assert_eq!(job.params.roles.len(), 1);
    let c = complete(&cell, cell.chars().count() - 3, frameworks);
    assert_eq!(c.matches, ["%cpu="]);
}
