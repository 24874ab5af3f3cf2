//! `provisync deadletters`: changes that could not be delivered, listed or sent back.

use anyhow::Result;
use clap::Args;

use super::{Remote, admin_client, short, table};

#[derive(Args, Debug)]
pub struct DeadLetterArgs {
    /// Send them back to the delivery queue instead of listing them.
    #[arg(long)]
    redrive: bool,
    #[arg(long)]
    limit: Option<usize>,
    /// Print the raw JSON answer.
    #[arg(long)]
    json: bool,
}

pub async fn dead_letters(remote: &Remote, args: DeadLetterArgs) -> Result<()> {
    let admin = admin_client(remote)?;
    if args.redrive {
        let v = admin.redrive(args.limit).await?;
        println!("{} dead letter(s) sent back to the queue", v.redriven);
        return Ok(());
    }
    let v = admin.dead_letters(args.limit).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("{} dead letter(s)", v.count);
    if !v.dead_letters.is_empty() {
        let rows: Vec<Vec<String>> = v
            .dead_letters
            .iter()
            .map(|d| {
                vec![
                    d.group_id.clone(),
                    d.dedup_id.clone(),
                    d.receive_count.to_string(),
                    short(&d.body.to_string(), 80),
                ]
            })
            .collect();
        table(&["GROUP", "EVENT", "RECEIVES", "BODY"], &rows);
        println!("send them back with: provisync deadletters --redrive");
    }
    Ok(())
}
