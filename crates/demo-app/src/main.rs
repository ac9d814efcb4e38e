//! `caretaker-demo-app`: the demo web application managed by caretaker.

fn main() -> std::process::ExitCode {
    caretaker_demo_app::main_exit(std::env::args_os())
}
