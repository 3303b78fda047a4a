//! SECURITY.md stays true: every test its attack table names exists, and the number of attacks it
//! claims is the number of rows.

use std::path::Path;

fn sources(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
}

#[test]
fn every_test_the_attack_table_names_exists_and_the_count_is_right() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let table = std::fs::read_to_string(root.join("SECURITY.md")).unwrap();
    let mut code = String::new();
    sources(&root.join("src"), &mut code);
    sources(&root.join("tests"), &mut code);

    let rows: Vec<&str> = table
        .lines()
        .filter(|l| {
            l.starts_with("| ")
                && l.split('|')
                    .nth(1)
                    .is_some_and(|c| c.trim().parse::<u32>().is_ok())
        })
        .collect();
    let claimed: usize = table
        .split("**")
        .find_map(|s| s.strip_suffix(" attacks")?.parse().ok())
        .expect("SECURITY.md says **N attacks**");
    assert_eq!(
        rows.len(),
        claimed,
        "rows in the table vs the count it claims"
    );

    // "same" in the test column means the tests of the row above (plus any named after it).
    let mut previous: Vec<&str> = Vec::new();
    for row in rows {
        let test_cell = row.rsplit('|').nth(1).unwrap();
        let mut names: Vec<&str> = test_cell.split('`').skip(1).step_by(2).collect();
        if test_cell.trim().starts_with("same") {
            names.extend(previous.iter().copied());
        }
        assert!(!names.is_empty(), "a row without a test: {row}");
        previous = names.clone();
        for name in names {
            if name.ends_with(".rs") || name.contains('/') {
                assert!(
                    root.join(name).exists(),
                    "{name} named in SECURITY.md does not exist"
                );
                continue;
            }
            assert!(
                code.contains(&format!("fn {name}(")),
                "test {name} named in SECURITY.md does not exist"
            );
        }
    }
}
