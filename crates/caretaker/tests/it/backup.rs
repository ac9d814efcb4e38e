//! `caretaker backup ...` end to end on a local repository.

use crate::{stderr_of, Scratch};

#[test]
fn backup_init_run_list_check_restore_and_refusal() {
    let s = Scratch::new();
    let media = s.path().join("media");
    std::fs::create_dir_all(media.join("été")).unwrap();
    std::fs::write(media.join("été/photo.txt"), "x".repeat(5000)).unwrap();
    let repo = s.path().join("repo");
    let ct = s.write_config(&format!(
        "version: 1\napp:\n  name: bk\nfiles: [ {} ]\nbackup:\n  repository: {}\n  password: \"a long test password\"\n  schedule: daily\n  keep: {{ last: 2 }}\n",
        media.display(),
        repo.display()
    ));
    let out = ct.run(&["backup", "list"]);
    assert_eq!(out.status.code(), Some(6), "missing repository: {}", stderr_of(&out));
    assert!(stderr_of(&out).contains("caretaker backup init"), "{}", stderr_of(&out));
    ct.expect(&["backup", "init"], 0);
    let run = ct.json(&["backup", "run", "--json"]);
    assert_eq!(run["outcome"], "succeeded", "{run}");
    let list = ct.json(&["backup", "list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    ct.expect(&["backup", "check", "--read-data-subset", "50%"], 0);
    let target = s.path().join("restored");
    ct.expect(&["backup", "restore", "--target", target.to_str().unwrap()], 0);
    let restored = target.join(media.strip_prefix("/").unwrap()).join("été/photo.txt");
    assert_eq!(std::fs::read_to_string(restored).unwrap().len(), 5000);

    // An emptied file store is refused (exit 5), not backed up.
    std::fs::remove_dir_all(media.join("été")).unwrap();
    let out = ct.run(&["backup", "run"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr_of(&out));
    ct.expect(&["backup", "prune"], 0);
}
