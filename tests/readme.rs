//! The README's magics reference is generated from the magic table, so it
//! cannot drift from what the interpreter accepts. Regenerate it with
//! `CIAO_UPDATE_README=1 cargo test --test readme`.

use ciao::frameworks::Frameworks;
use ciao::interpreter::help_markdown;

const BEGIN: &str = "<!-- magics:begin";
const END: &str = "<!-- magics:end -->";

#[test]
fn readme_magics_reference_matches_the_magic_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let begin = readme.find(BEGIN).expect("README has the magics:begin marker");
    let body_start = begin + readme[begin..].find("-->").expect("marker closes") + 3;
    let end = readme.find(END).expect("README has the magics:end marker");
    let expected = format!("\n{}\n", help_markdown(Frameworks::embedded()).trim_end());
    if readme[body_start..end] == expected {
        return;
    }
    if std::env::var_os("CIAO_UPDATE_README").is_some() {
        let updated = format!("{}{}{}", &readme[..body_start], expected, &readme[end..]);
        std::fs::write(path, updated).unwrap();
        return;
    }
    panic!("README's magics reference is out of date: run CIAO_UPDATE_README=1 cargo test --test readme");
}
