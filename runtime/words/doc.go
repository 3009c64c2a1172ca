// Package words holds the small helpers nsrun's messages share.
package words
