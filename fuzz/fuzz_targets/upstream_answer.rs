//! The app's answers, as authgate's own HTTP/1.1 client reads them: any bytes, arriving in any
//! pieces, after a GET or a HEAD, make one answer or a refusal, never a panic; and an answer never
//! takes bytes past its own end, so that what follows it (the next user's answer, if the app
//! misbehaves) is left where the pool sees it and closes the connection.
#![no_main]

use authgate::internals::upstream::read_one_answer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first bytes choose the request's method and where the reads cut the answer.
    let Some((&control, wire)) = data.split_first() else {
        return;
    };
    let cuts: Vec<usize> = wire.iter().take(usize::from(control % 8)).map(|&b| b as usize * 7).collect();
    let head = control & 0x80 != 0;
    let whole = read_one_answer(wire, &[], head);
    let pieces = read_one_answer(wire, &cuts, head);
    if let Ok(Some((_, body, left))) = &whole {
        assert!(wire.ends_with(left), "an answer took bytes past its end");
        assert!(body.len() <= wire.len());
        // However the reads cut it, a complete answer reads the same.
        assert_eq!(pieces.as_ref().ok(), Some(&whole.as_ref().ok().cloned().flatten()));
    }
});
