package channels

// Log attribute keys.
const (
	logChannelID = "channel_id"
	logDirection = "direction"
	logOwner     = "worker_id"
)
