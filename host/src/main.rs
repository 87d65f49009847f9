fn main() {
    println!("brain: not yet");
}
