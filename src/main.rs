fn main() {
    println!("dealias");
}
